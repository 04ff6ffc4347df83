"""Reference PyTorch models: what a reader would write with ``torch.nn`` and autograd.

The simulators in :mod:`~how_cnns_learn.simulate` compute the same networks with explicit (FFT)
gradients and many networks at once; these modules are the independent reference they are tested
against, and the models chapters show when they say "a CNN as you would build it".
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from .fourier import cross_correlation_weight_to_kernel, kernel_to_cross_correlation_weight

__all__ = ["ConvClassifier", "LinearCNN", "MLPClassifier", "SmallReLUCNN"]


class LinearCNN(nn.Module):
    """Two-layer linear CNN: ``Conv2d(1, C, k, padding="same", padding_mode="circular", bias=False)``, then
    ``Linear(C·n², p, bias=False)`` on the flattened feature maps. Input ``(N, n, n)`` or ``(N, 1, n, n)`` (what
    :func:`~how_cnns_learn.training.train_classifier` feeds), output ``(N, p)``."""

    def __init__(
        self, n: int, kernel_size: int, n_outputs: int, channels: int = 1, dtype: torch.dtype = torch.float64
    ):
        super().__init__()
        if not 1 <= kernel_size <= n:
            raise ValueError(f"kernel_size must lie in [1, n = {n}], got {kernel_size}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.n = n
        self.conv = nn.Conv2d(
            1, channels, kernel_size, padding="same", padding_mode="circular", bias=False, dtype=dtype
        )
        self.dense = nn.Linear(channels * n * n, n_outputs, bias=False, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1:] != (self.n, self.n):
            raise ValueError(f"LinearCNN expects inputs (N, {self.n}, {self.n}) or (N, 1, {self.n}, {self.n}), "
                             f"got {tuple(x.shape)}")
        return self.dense(self.conv(x.unsqueeze(1)).flatten(1))

    def embedded_kernel(self) -> NDArray[np.floating]:
        """The ``(C, n, n)`` convolution kernels ``r̃_c`` equivalent to the cross-correlation weights (same ``|λ|``)."""
        weights = self.conv.weight.detach().cpu().numpy()[:, 0]
        return np.stack([cross_correlation_weight_to_kernel(w, self.n) for w in weights])

    def load_embedded(self, dense: NDArray[np.floating], kernel: NDArray[np.floating]) -> None:
        """Set the weights from the simulator's layout: ``dense`` ``(p, C, n, n)``, ``kernel`` ``(C, n, n)`` embedded."""
        k = self.conv.kernel_size[0]
        C = self.conv.out_channels
        if dense.shape != (self.dense.out_features, C, self.n, self.n) or kernel.shape != (C, self.n, self.n):
            raise ValueError(f"expected dense (p, {C}, {self.n}, {self.n}) and kernel ({C}, {self.n}, {self.n}), "
                             f"got {dense.shape} and {kernel.shape}")
        weights = np.stack([kernel_to_cross_correlation_weight(r, k) for r in kernel])
        with torch.no_grad():
            self.conv.weight[:, 0] = torch.as_tensor(weights)
            self.dense.weight[:] = torch.as_tensor(dense.reshape(dense.shape[0], -1))






class SmallReLUCNN(nn.Sequential):
    """A small nonlinear image classifier: ``Conv2d(1, C, k, padding=k//2, bias=False)`` (init scaled by
    ``init_gain``), ReLU, 2×2 average pooling, and a linear head. Input ``(N, 1, n, n)``, logits ``(N, classes)``."""

    def __init__(self, n: int = 8, channels: int = 16, kernel_size: int = 3, classes: int = 10, init_gain: float = 0.1):
        if n % 2 or kernel_size % 2 == 0 or channels < 1 or classes < 2:
            raise ValueError(f"need even n, odd kernel_size, channels >= 1, classes >= 2; got {n}, {kernel_size}, {channels}, {classes}")
        conv = nn.Conv2d(1, channels, kernel_size, padding=kernel_size // 2, bias=False)
        with torch.no_grad():
            conv.weight.mul_(init_gain)
        super().__init__(conv, nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(channels * (n // 2) ** 2, classes))

    @property
    def filter_norms(self) -> NDArray[np.floating]:
        """``(C,)`` Euclidean norms of the first-layer filters."""
        return self[0].weight.detach().flatten(1).norm(dim=1).cpu().numpy()


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "linear":
        return nn.Identity()
    raise ValueError(f"activation must be 'relu' or 'linear', got {name!r}")


class MLPClassifier(nn.Sequential):
    """Fully connected net: flatten, ``Linear(n², hidden, bias=False)``, activation, ``Linear(hidden, classes, bias=False)``.

    ``activation`` is ``"linear"`` (the FCNN of the theory) or ``"relu"``; both layers' default init is scaled by
    ``init_gain``. Input ``(N, 1, n, n)``, output ``(N, classes)``.
    """

    def __init__(self, n: int, classes: int, hidden: int = 256, activation: str = "linear", init_gain: float = 1.0):
        if n < 1 or classes < 2 or hidden < 1 or not init_gain > 0:
            raise ValueError(f"need n >= 1, classes >= 2, hidden >= 1, init_gain > 0; got {n}, {classes}, {hidden}, {init_gain}")
        layers = [nn.Linear(n * n, hidden, bias=False), _activation(activation), nn.Linear(hidden, classes, bias=False)]
        with torch.no_grad():
            for layer in (layers[0], layers[2]):
                layer.weight.mul_(init_gain)
        super().__init__(nn.Flatten(), *layers)

    @property
    def filter_norms(self) -> NDArray[np.floating]:
        """``(hidden,)`` norms of the first layer's rows (its "filters")."""
        return self[1].weight.detach().norm(dim=1).cpu().numpy()


class ConvClassifier(nn.Sequential):
    """A stack of circular convolutions and a dense readout: the CNNs of the cue-conflict chapter.

    Layers: for each ``k`` in ``kernel_sizes`` a ``Conv2d(·, channels, k, padding="same", padding_mode="circular",
    bias=False)`` (a circular convolution of the ``n×n`` maps, support as :func:`~how_cnns_learn.fourier.kernel_support`) followed by the activation
    (``"relu"`` or ``"linear"``); then flatten and ``Linear(channels·n², classes, bias=False)``. Every layer's default
    init is scaled by ``init_gain``. Input ``(N, 1, n, n)``, output ``(N, classes)``.
    """

    def __init__(
        self,
        n: int,
        classes: int,
        kernel_sizes: tuple[int, ...] = (3, 3),
        channels: int = 16,
        activation: str = "relu",
        init_gain: float = 1.0,
    ):
        if not kernel_sizes or any(not 1 <= k <= n for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be non-empty and lie in [1, n = {n}], got {kernel_sizes}")
        if channels < 1 or classes < 2 or not init_gain > 0:
            raise ValueError(f"need channels >= 1, classes >= 2, init_gain > 0; got {channels}, {classes}, {init_gain}")
        layers: list[nn.Module] = []
        previous = 1
        for k in kernel_sizes:
            layers += [nn.Conv2d(previous, channels, k, padding="same", padding_mode="circular", bias=False),
                       _activation(activation)]
            previous = channels
        layers += [nn.Flatten(), nn.Linear(channels * n * n, classes, bias=False)]
        with torch.no_grad():
            for layer in layers:
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    layer.weight.mul_(init_gain)
        super().__init__(*layers)

    @property
    def filter_norms(self) -> NDArray[np.floating]:
        """``(channels,)`` norms of the first layer's filters."""
        return self[0].weight.detach().flatten(1).norm(dim=1).cpu().numpy()
