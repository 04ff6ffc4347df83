"""how_cnns_learn: the shared library of the executable book on how (linear) CNNs learn.

Modules (chapters import from these public names only):

* :mod:`~how_cnns_learn.fourier` — the DFT convention, dominant frequency amplitudes;
* :mod:`~how_cnns_learn.theory` — closed forms of the mode dynamics;
* :mod:`~how_cnns_learn.data` — data sets generated in code and their structure (SVD of Σ_yx);
* :mod:`~how_cnns_learn.simulate` — batched full-batch GD simulators and trajectory measurements;
* :mod:`~how_cnns_learn.agop` — patch-AGOP, filter covariance (CNFA) and ConvRFM of Beaglehole et al.;
* :mod:`~how_cnns_learn.bottleneck` — deep circular CNNs in Fourier coordinates, the convolution bottleneck (Wen & Jacot);
* :mod:`~how_cnns_learn.keypatterns` — key-pattern data and the two-layer ReLU CNN of Yu, Zhang & Zhu (SGD);
* :mod:`~how_cnns_learn.claims` — named, tolerance-checked claims that fail the chapter when broken;
* :mod:`~how_cnns_learn.plotting` — the one figure style (the only module that imports matplotlib);
* :mod:`~how_cnns_learn.repro` — parameters, seeding, device, environment footer.
"""

# plotting (matplotlib) is not imported here: `from how_cnns_learn import plotting` loads it on demand.
from . import agop, bottleneck, claims, data, fourier, keypatterns, repro, simulate, theory

__all__ = ["agop", "bottleneck", "claims", "data", "fourier", "keypatterns", "plotting", "repro", "simulate", "theory"]
__version__ = "0.1.0"

