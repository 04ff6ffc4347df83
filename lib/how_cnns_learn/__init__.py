"""how_cnns_learn: the shared library of the executable book on how (linear) CNNs learn.

Modules (chapters import from these public names only), in three layers (``tests/test_layering.py`` enforces
them: the core imports only the core; a paper module imports the core and its own paper, never another paper;
applications may import anything):

**Core** — shared by every paper:

* :mod:`~how_cnns_learn.fourier` — the one DFT convention (numpy and torch), kernel power, dominant frequencies;
* :mod:`~how_cnns_learn.data` — data sets generated in code and their structure (SVD of Σ_yx);
* :mod:`~how_cnns_learn.models` — small torch CNNs and MLPs that map ``(N, 1, n, n)`` images to ``(N, p)`` outputs;
* :mod:`~how_cnns_learn.training` — the torch trainers (classifier, weight decay) with one weight-decay convention,
  one recording callback and a reported device;
* :mod:`~how_cnns_learn.claims` — named, tolerance-checked claims that fail the chapter when broken;
* :mod:`~how_cnns_learn.plotting` — the one figure style (the only module that imports matplotlib);
* :mod:`~how_cnns_learn.repro` — parameters, seeding, device (validation and where the work ran), environment footer.

**Papers** — one block per paper, on top of the core:

* :mod:`~how_cnns_learn.theory` and :mod:`~how_cnns_learn.simulate` — linear CNNs (Pinson, Lenaerts & Ginis):
  closed forms of the mode dynamics; batched full-batch GD simulators and trajectory measurements;
* :mod:`~how_cnns_learn.bottleneck` — deep circular CNNs in Fourier coordinates, the convolution bottleneck (Wen & Jacot);
* :mod:`~how_cnns_learn.agop` — patch-AGOP, filter covariance (CNFA) and ConvRFM of Beaglehole et al.;
* :mod:`~how_cnns_learn.keypatterns` — key-pattern data and the two-layer ReLU CNN of Yu, Zhang & Zhu (SGD).

**Applications** — built on both:

* :mod:`~how_cnns_learn.predict` — ``python -m how_cnns_learn predict DATA``: the theory's predictions for a
  reader's own data set, checked by simulation;
* :mod:`~how_cnns_learn.sweeps` — grid sweeps of the linear CNN, simulated, predicted and judged point by point;
* :mod:`~how_cnns_learn.interactive` — static interactive figures (Plotly) that explore a grid sweep with sliders.
"""

import importlib
from typing import Any

from . import agop, bottleneck, claims, data, fourier, keypatterns, models, repro, simulate, theory, training

__all__ = ["agop", "bottleneck", "claims", "data", "fourier", "interactive", "keypatterns", "models", "plotting",
           "predict", "repro", "simulate", "sweeps", "theory", "training"]
__version__ = "0.1.0"

_ON_DEMAND = ("interactive", "plotting", "predict", "sweeps")  # matplotlib/plotly or the CLI: loaded when first used


def __getattr__(name: str) -> Any:
    """``how_cnns_learn.plotting`` (and the other on-demand modules) imported on first access."""
    if name in _ON_DEMAND:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
