"""Test configuration: one torch thread (fast on small problems), no Agg backend leaking into kernels."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MPLBACKEND", None)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the build pipeline lives at the repository root
    sys.path.insert(0, str(ROOT))
