#!/usr/bin/env bash
# The simulator benchmark on a CUDA machine, in one short call (about 1-3 minutes on one H200).
#
#   bash bench/gpu.sh            # from the repository root (or anywhere: it cds there)
#   PYTHON=.venv/bin/python BENCH_DEVICE=cpu bash bench/gpu.sh --quick   # dry run of the same steps on a CPU
#
# Installs and downloads nothing: it runs the machine's own python3 (a CUDA build of torch, numpy, pandas, scipy,
# scikit-learn, matplotlib, seaborn and tqdm, as on the project's GPU machines) with the library imported from lib/
# (PYTHONPATH), not the CPU-only .venv of this repository (torch==2.13.0+cpu cannot use CUDA). Override the
# interpreter with PYTHON=... . Steps:
#   1. environment check: python, torch, CUDA device, the library imports (fails fast with a clear message);
#   2. the CUDA-only unit tests (tests/test_simulate.py -k cuda: CUDA-graph steps = eager steps = CPU, 1e-12);
#   3. bench/simulator.py --device cuda: all 12 sizes, trajectories checked against every baseline, table written
#      to bench/results/cuda.md (and copied to $OUT when that is set, e.g. on the project's device machine).
set -euo pipefail
DEVICE=${BENCH_DEVICE:-cuda}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# the CPU-side work of a CUDA run is one Python thread issuing kernels; many OpenMP threads only add noise
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

DEVICE="$DEVICE" "$PY" - <<'EOF'
import os
import sys
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if os.environ["DEVICE"] == "cpu":
    print("dry run on the CPU")
elif not torch.cuda.is_available():
    raise SystemExit("bench/gpu.sh: torch sees no CUDA device (a CPU-only torch, or no GPU on this machine)")
else:
    print(f"device: {torch.cuda.get_device_name(0)}")
import how_cnns_learn.simulate  # noqa: F401  (the library and its dependencies import)
EOF

if "$PY" -c "import pytest" 2>/dev/null; then
    timeout 120 "$PY" -m pytest -q -rs -p no:cacheprovider --noconftest tests/test_simulate.py -k cuda \
        || echo "bench/gpu.sh: the CUDA unit tests FAILED (see above); the benchmark runs anyway"
else
    echo "pytest not installed: skipping the CUDA unit tests"
fi

timeout "${BENCH_TIMEOUT:-200}" "$PY" bench/simulator.py --device "$DEVICE" --out-dir bench/results "$@"
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then
    cp bench/results/"$DEVICE"*.md "$OUT/"
fi
