"""The shared training core: the book's torch trainers for any model, and the cue-conflict evaluation.

The full-batch linear simulators (:mod:`~how_cnns_learn.simulate`) integrate closed-form gradients of many networks
at once; everything that trains an ordinary ``torch.nn.Module`` by autograd lives here, for every paper of the book:

* :func:`train_classifier` — minibatch SGD or Adam on images ``(N, 1, n, n)`` → outputs ``(N, p)``, cross-entropy or
  the mean squared loss of the linear theory;
* :func:`train_classifiers` — the same for S networks of one architecture at once (batched seeds: one model, one
  optimiser step for all, each network equal to its one-seed run up to float rounding);
* :func:`train_weight_decay` — full-batch training of ``loss_fn(model) + (λ/2)‖θ‖²`` (the convolution bottleneck);
* :func:`evaluate_cue_conflict` and :func:`model_outputs` — evaluation of a trained classifier.

**Conventions (one for every trainer here).**

* *Weight decay.* ``weight_decay = λ`` always means the penalty ``(λ/2)‖θ‖²`` added to the loss, i.e. the gradient
  ``λθ`` (the decoupled step ``θ ← θ − η(∇L + λθ)``), as in :mod:`~how_cnns_learn.simulate` and
  :mod:`~how_cnns_learn.theory`. A penalty written ``λ'‖θ‖²`` is ``weight_decay = 2λ'``.
* *Recording.* A trainer records at step (or epoch) 0, every ``record_every`` and at the end; at each recorded point
  it calls ``on_record(model)`` (if given) under ``torch.no_grad()``, and every ``name: value`` the callback returns
  becomes a column of that row. The callback must not change the model. Nothing else is recorded inside the loop;
  ``train_classifiers(..., record=False)`` records nothing at all (for callers that evaluate the networks themselves).
* *Device.* Every trainer takes ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``;
  validated by :func:`~how_cnns_learn.repro.check_device`), moves the model there, reports where it ran to
  :func:`~how_cnns_learn.repro.record_device` (the chapter footer prints it) and stores it in the returned table's
  ``attrs["device"]``. Data a caller's ``loss_fn`` closes over must live on the same device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from .data import CueConflictData, TrainingSet
from .repro import check_device, progress_bar, record_device

__all__ = [
    "PlainAdam",
    "PlainSGD",
    "Recorder",
    "evaluate_cue_conflict",
    "model_outputs",
    "plain_optimiser",
    "train_classifier",
    "train_classifiers",
    "train_weight_decay",
]

Recorder = Callable[[torch.nn.Module], Mapping[str, Any]]
"""``on_record(model) -> {column: value}``: called under ``torch.no_grad()`` at every recorded step."""


def _model_dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise ValueError("model has no parameters to train or to read the dtype/device from")
    return parameter.dtype, parameter.device


def model_outputs(model: torch.nn.Module, inputs: TrainingSet | NDArray[np.floating]) -> NDArray[np.floating]:
    """Outputs ``(N, p)`` of ``model`` on images ``(N, n, n)`` (or a :class:`TrainingSet`'s inputs), as float64 numpy.

    The images are fed as ``(N, 1, n, n)`` in the model's dtype, on the model's device, without gradients.
    """
    images = inputs.inputs if isinstance(inputs, TrainingSet) else np.asarray(inputs)
    if images.ndim != 3:
        raise ValueError(f"inputs must be images of shape (N, n, n), got {images.shape}")
    dtype, device = _model_dtype_device(model)
    with torch.no_grad():
        out = model(torch.as_tensor(images, dtype=dtype, device=device).unsqueeze(1))
    return out.cpu().double().numpy()


def _as_tensors(
    d: TrainingSet, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, n, n)``, targets ``(N, p)`` and labels ``(N,)`` of ``d`` on ``device`` (the trainers' inputs)."""
    X = torch.as_tensor(d.inputs, dtype=dtype, device=device).unsqueeze(1)
    Y = torch.as_tensor(d.targets, dtype=dtype, device=device)
    return X, Y, Y.argmax(1)


def _squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``½‖ŷ^μ − y^μ‖²`` per item: outputs and targets ``(..., p)`` → ``(...)``, summed over the ``p`` outputs (the loss
    of the linear theory; both classifier trainers average it over the items)."""
    return 0.5 * ((out - target) ** 2).sum(-1)


class PlainSGD:
    """Plain gradient steps ``θ ← θ − lr·∇L`` (no momentum, no weight decay) on tensors whose ``.grad`` is set.

    Each :meth:`step` is ``param.add_(param.grad, alpha=-lr)`` under ``torch.no_grad()``, exactly the update of
    ``torch.optim.SGD``'s single-tensor path (the CPU default: the same bits, unit test); :meth:`zero_grad` sets the
    gradients to ``None`` as torch's does, and a schedule sets :attr:`lr` between steps. The library's trainers use
    this and :class:`PlainAdam` instead of ``torch.optim``: the first ``torch.optim`` optimiser built in a process
    imports ``torch._dynamo`` (1.3–2.0 s, measured), a fixed cost that every chapter would pay.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        self.params, self.lr = list(params), float(lr)
        if not self.params:
            raise ValueError("the optimiser got no parameters")

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


class PlainAdam(PlainSGD):
    """Adam (``betas``, ``eps``; no weight decay, no amsgrad) with the arithmetic of torch's single-tensor
    ``torch.optim.Adam`` step (the CPU default; the same bits, unit test):

    ``m ← m + (1 − β₁)(g − m)``, ``v ← β₂v + (1 − β₂)g²``, ``θ ← θ − (lr/(1 − β₁ᵗ))·m / (√v/√(1 − β₂ᵗ) + ε)``,

    with ``t`` counted per parameter (a parameter without a gradient is skipped, as torch does).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        if any(p.is_complex() for p in self.params):
            raise ValueError("PlainAdam takes real parameters (torch's Adam views complex ones as real pairs)")
        self.betas, self.eps = betas, eps
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]
        self.steps = [0] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for i, (p, (m, v)) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            t = float(self.steps[i])
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            step_size = self.lr / (1 - b1**t)
            bias_correction2_sqrt = (1 - b2**t) ** 0.5
            p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)


def plain_optimiser(params: Iterable[torch.Tensor], optimizer: str, lr: float) -> PlainSGD:
    """The trainers' optimisers: ``"sgd"`` or ``"gd"`` → :class:`PlainSGD`, ``"adam"`` → :class:`PlainAdam`
    (torch's default betas and eps)."""
    if optimizer in ("sgd", "gd"):
        return PlainSGD(params, lr)
    if optimizer == "adam":
        return PlainAdam(params, lr)
    raise ValueError(f"optimizer must be 'sgd', 'gd' or 'adam', got {optimizer!r}")


def train_classifier(
    model: torch.nn.Module,
    data: TrainingSet,
    *,
    test_fraction: float = 1 / 6,
    test_data: TrainingSet | None = None,
    epochs: int = 40,
    lr: float = 0.1,
    batch_size: int | None = 32,
    seed: int = 0,
    record_at: Sequence[int] = (),
    record_every: int = 0,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    on_record: Recorder | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Minibatch SGD (or Adam) for any classifier ``model`` mapping ``(N, 1, n, n)`` images to ``(N, p)`` outputs.

    The book's one classifier trainer: every chapter that trains a torch network on images calls it.

    Args:
        data: training images and targets ``(N, p)``; the labels are ``targets.argmax(1)``.
        test_fraction: share of ``data`` held out for the test accuracy, unless ``test_data`` is given (then every
            item of ``data`` is trained on and the accuracy is measured on ``test_data``).
        loss: ``"cross_entropy"`` (on the labels) or ``"mse"``: ``L = (1/B) Σ_μ ½‖ŷ^μ − y^μ‖²`` on the targets
            themselves (the mean loss of the linear theory, so time is ``t/τ = lr·step`` with full batches).
        batch_size: items per step (``None`` or ``≥ N``: full-batch gradient descent, one step per epoch, a
            discretised gradient flow for ``optimizer="sgd"``; the rows of the batch are still shuffled, which
            changes only the summation order).
        optimizer: ``"sgd"`` (plain steps ``θ ← θ − lr·∇L``) or ``"adam"`` (torch's Adam, default betas).
        record_at: epochs at which to record (epoch 0 and the last epoch always are); ``record_every``: also every
            this many epochs (0: off).
        on_record: called with the model at every recorded epoch (module docstring); e.g. the mode strengths of
            the outputs, ``lambda m: dict(zip(["a1", "a2"], simulate.mode_strengths(model_outputs(m, data), data,
            structure)))``, or ``lambda m: evaluate_cue_conflict(m, cue).set_index("measure")["value"]``.
        device: where to train (validated; the model is moved there; inputs take the model's dtype).
        progress: show a progress bar over the epochs.

    The split and the batches are drawn from ``seed``. Returns a tidy table, one row per recorded epoch: ``epoch``,
    ``step``, ``train loss``, ``test accuracy``, the first-layer filter norms (``norms``, an array) when the model has
    a ``filter_norms`` property, and the columns of ``on_record``; ``attrs["device"]`` is where it ran.
    """
    _check_classifier_settings(data, test_data, test_fraction, epochs, lr, batch_size, record_every, loss, optimizer)
    dev = check_device(device)
    model.to(dev)
    dtype, _ = _model_dtype_device(model)
    ran_on = record_device(model, by="train_classifier")

    X, Y, y = _as_tensors(data, dtype, dev)
    generator = torch.Generator().manual_seed(seed)
    if test_data is None:
        order = torch.randperm(len(y), generator=generator)
        n_test = int(round(test_fraction * len(y)))
        test, train = order[:n_test], order[n_test:]
        X_test, y_test = X[test.to(dev)], y[test.to(dev)]
    else:
        train = torch.arange(len(y))
        X_test, _, y_test = _as_tensors(test_data, dtype, dev)
    optimiser = plain_optimiser(model.parameters(), optimizer, lr)
    batch_size = len(train) if batch_size is None else batch_size

    def objective(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if loss == "mse":
            return _squared_error(out, Y[batch]).mean()
        return torch.nn.functional.cross_entropy(out, y[batch])

    rows = []
    step = 0

    def snapshot(epoch: int) -> None:
        with torch.no_grad():
            accuracy = (model(X_test).argmax(1) == y_test).to(dtype).mean().item()
            train_idx = train.to(dev)
            row = {"epoch": epoch, "step": step, "train loss": objective(model(X[train_idx]), train_idx).item(),
                   "test accuracy": accuracy}
            if hasattr(model, "filter_norms"):
                row["norms"] = model.filter_norms
            if on_record is not None:
                row.update(dict(on_record(model)))
        rows.append(row)

    snapshot(0)
    for epoch in progress_bar(range(1, epochs + 1), enabled=progress, leave=False, desc="epochs"):
        shuffled = train[torch.randperm(len(train), generator=generator)].to(dev)
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start : start + batch_size]
            optimiser.zero_grad()
            objective(model(X[batch]), batch).backward()
            optimiser.step()
            step += 1
        if epoch in record_at or epoch == epochs or (record_every and epoch % record_every == 0):
            snapshot(epoch)
    table = pd.DataFrame(rows)
    table.attrs["device"] = str(ran_on)
    return table


# ---------------------------------------------------------------------------------------------------------------------
# Batched seeds: S networks of one architecture trained as one model
# ---------------------------------------------------------------------------------------------------------------------

class _CircularPad(torch.autograd.Function):
    """``F.pad(x, pad, mode="circular")`` with a hand-written backward, bit-identical to autograd's.

    Autograd differentiates torch's circular pad through its slice copies (a zero-filled gradient and a copy per
    slice, a large share of a 3×3 layer's time on 16×16 maps); this backward adds the wrapped borders of the
    gradient ``(..., h + t + b, w + l + r)`` onto its interior directly, in autograd's order (the bottom, then the
    top rows; then the right, then the left columns of the row-folded gradient), so every sum has the same terms
    in the same order: the same bits (``tests/test_batched_training.py``). Measured: a 3-layer 3×3 ReLU stack of
    the cue-conflict chapter trains in 0.8× the time (2 networks, 12 epochs, one CPU thread).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.pad = pad
        return F.pad(x, pad, mode="circular")

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        left, right, top, bottom = ctx.pad
        h, w = g.shape[-2] - top - bottom, g.shape[-1] - left - right
        rows = g[..., top : top + h, :].clone()  # (..., h, w + l + r): the interior rows
        if bottom:
            rows[..., :bottom, :] += g[..., top + h :, :]
        if top:
            rows[..., h - top :, :] += g[..., :top, :]
        grad = rows[..., left : left + w].clone()  # (..., h, w)
        if right:
            grad[..., :right] += rows[..., left + w :]
        if left:
            grad[..., w - left :] += rows[..., :left]
        return grad, None


def _pad(x: torch.Tensor, pad: tuple[int, ...], mode: str) -> torch.Tensor:
    """``F.pad(x, pad, mode=mode)``; a circular pad of a tensor that needs a gradient goes through ``_CircularPad``."""
    if mode == "circular" and len(pad) == 4 and x.requires_grad and torch.is_grad_enabled():
        return _CircularPad.apply(x, tuple(pad))
    return F.pad(x, pad, mode=mode)


_BATCHABLE = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.ReLU, torch.nn.Identity, torch.nn.Flatten, torch.nn.AvgPool2d)


class _Stacked:
    """The layers of S ``nn.Sequential`` networks of one architecture, their parameters stacked on a leading seed axis.

    The forward pass runs the S networks' layers side by side in one autograd graph (one loss, one backward, one
    optimiser step for all); an input shared by every network is used as it is until the first layer with
    parameters. Layers:

    * ``Conv2d`` (stride 1, dilation 1, groups 1; zero or circular padding), ``O(B·S·C_in·C_out·k²·h·w)``: one
      ``conv2d`` per network (with oneDNN on the CPU, one grouped ``conv2d`` over all networks was measured slower);
      a circular convolution whose kernel is larger than half the maps (``k > n/2``) is computed for all networks at
      once in Fourier space instead (cross-correlation: ``out̂(f) = Σ_c conj(k̂_oc(f)) x̂_c(f)``,
      ``O(B·S·C_in·C_out·h·w + B·S·(C_in + C_out)·h·w·log(hw))``; 2.5–5× faster for 15×15 kernels on 16×16 maps,
      measured slower than oneDNN for 3×3 kernels, also with one input channel);
    * ``Linear``: one ``linear`` per network (a batched ``bmm`` was measured slower);
    * ``ReLU``, ``Identity``, ``AvgPool2d``, ``Flatten``: the layer itself, on each network's activations.

    After construction each network's parameters are views of the stacked tensors (``param.data = stack[s]``), so
    an optimiser stepping the stacks trains every network, and each network can be called on its own at any time.
    """

    def __init__(self, nets: Sequence[torch.nn.Module], bind: bool = True):
        first = nets[0]
        for i, net in enumerate(nets):
            if not isinstance(net, torch.nn.Sequential) or type(net).forward is not torch.nn.Sequential.forward:
                raise TypeError(f"models[{i}] is a {type(net).__name__}: train_classifiers batches nn.Sequential networks "
                                "(MLPClassifier, ConvClassifier, SmallReLUCNN) whose forward is the Sequential's; "
                                "train other models with train_classifier")
            for layer in net:
                if not isinstance(layer, _BATCHABLE):
                    raise TypeError(f"models[{i}] has a {type(layer).__name__} layer; train_classifiers supports only "
                                    f"{', '.join(t.__name__ for t in _BATCHABLE)}")
                if isinstance(layer, torch.nn.Conv2d) and (
                        layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1
                        or layer.padding_mode not in ("zeros", "circular")):
                    raise TypeError(f"models[{i}] has a Conv2d with stride {layer.stride}, dilation {layer.dilation}, "
                                    f"groups {layer.groups}, padding_mode {layer.padding_mode!r}; train_classifiers "
                                    "supports stride 1, dilation 1, groups 1 and zero or circular padding")
                if isinstance(layer, torch.nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
                    raise TypeError(f"models[{i}] has a Flatten over dims {layer.start_dim}..{layer.end_dim}; only 1..-1")
            if type(net) is not type(first) or len(net) != len(first) or any(
                    type(a) is not type(b) or repr(a) != repr(b) for a, b in zip(net, first)):
                raise ValueError(f"models[{i}] differs from models[0] in its layers: batched networks must share one "
                                 "architecture")
            shapes = [(name, p.shape, p.dtype, p.device) for name, p in net.named_parameters()]
            if shapes != [(name, p.shape, p.dtype, p.device) for name, p in first.named_parameters()]:
                raise ValueError(f"models[{i}] has parameters of other shapes, dtypes or devices than models[0]")
        if len({id(net) for net in nets}) != len(nets):
            raise ValueError("models must be distinct networks (the same object appears twice)")
        self.nets = list(nets)
        self.S = len(nets)
        self.layers = list(first)
        self.params: dict[tuple[int, str], torch.Tensor] = {}
        with torch.no_grad():
            for j, layer in enumerate(self.layers):
                for name, _ in layer.named_parameters(recurse=False):
                    stack = torch.stack([getattr(net[j], name).detach() for net in nets]).requires_grad_(bind)
                    self.params[j, name] = stack
                    for s, net in enumerate(nets):
                        if bind:  # (bind=False: a copy for evaluation, the networks are left alone)
                            getattr(net[j], name).data = stack[s]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def release(self) -> None:
        """Give each network its own copy of its parameters again (no longer views of the stacks)."""
        with torch.no_grad():
            for (j, name), stack in self.params.items():
                for s, net in enumerate(self.nets):
                    getattr(net[j], name).data = stack[s].detach().clone()

    def _conv(self, j: int, layer: torch.nn.Conv2d, x: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """Per network ``(B, C_out, h, w)`` from ``x``: one shared ``(B, C_in, h, w)`` or a list of S of them."""
        S, W = self.S, self.params[j, "weight"]  # (S, O, C, kh, kw)
        O, C, kh, kw = W.shape[1:]
        shared = isinstance(x, torch.Tensor)
        h, w = (x if shared else x[0]).shape[-2:]
        pad = layer._reversed_padding_repeated_twice  # (left, right, top, bottom), as the layer pads
        same = pad[0] + pad[1] == kw - 1 and pad[2] + pad[3] == kh - 1
        if layer.padding_mode == "circular" and same and kh <= h and kw <= w and max(kh, kw) > min(h, w) // 2:
            # cross-correlation with circular padding = a product in Fourier space with the embedded kernel
            kernel = torch.roll(F.pad(W, (0, w - kw, 0, h - kh)), (-pad[2], -pad[0]), (-2, -1))
            k_hat = torch.fft.rfft2(kernel).conj().flatten(-2)  # (S, O, C, F)
            x_hat = torch.fft.rfft2(x if shared else torch.stack(x)).flatten(-2)  # (B, C, F) or (S, B, C, F)
            if C == 1:
                out_hat = x_hat[..., None, 0, :] * k_hat[:, None, :, 0]  # (S, B, O, F)
            else:
                out_hat = torch.einsum("bcf,socf->sbof" if shared else "sbcf,socf->sbof", x_hat, k_hat)
            out = list(torch.fft.irfft2(out_hat.unflatten(-1, (h, w // 2 + 1)), s=(h, w)).unbind(0))
        else:  # one plain conv2d per network (oneDNN on the CPU: faster than one grouped conv2d, measured)
            mode = "circular" if layer.padding_mode == "circular" else "constant"
            if shared:
                padded = _pad(x, pad, mode)
                out = [F.conv2d(padded, W[s]) for s in range(S)]
            else:
                out = [F.conv2d(_pad(x[s], pad, mode), W[s]) for s in range(S)]
        if (j, "bias") in self.params:
            out = [o + self.params[j, "bias"][s][:, None, None] for s, o in enumerate(out)]
        return out

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Outputs ``(S, B, p)``. ``x``: ``(B, C, n, n)`` fed to every network (``shared``) or ``(S, B, C, n, n)``."""
        S = self.S
        h: torch.Tensor | list[torch.Tensor] = x if shared else list(x.unbind(0))
        for j, layer in enumerate(self.layers):
            if isinstance(layer, torch.nn.Conv2d):
                h = self._conv(j, layer, h)
            elif isinstance(layer, torch.nn.Linear):
                W, b = self.params[j, "weight"], self.params.get((j, "bias"))
                h = [F.linear(h if isinstance(h, torch.Tensor) else h[s], W[s], None if b is None else b[s])
                     for s in range(S)]
            else:  # ReLU, Identity, AvgPool2d, Flatten: the layer itself, on each network's activations
                h = layer(h) if isinstance(h, torch.Tensor) else [layer(a) for a in h]
        return h.expand(S, *h.shape) if isinstance(h, torch.Tensor) else torch.stack(h)


def _check_classifier_settings(data: TrainingSet, test_data: TrainingSet | None, test_fraction: float, epochs: int,
                               lr: float, batch_size: int | None, record_every: int, loss: str, optimizer: str) -> None:
    if epochs < 1 or (batch_size is not None and batch_size < 1) or not lr > 0 or record_every < 0:
        raise ValueError(f"bad settings: epochs={epochs}, batch_size={batch_size}, lr={lr}, record_every={record_every}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if test_data is None and not 0 < test_fraction < 1:
        raise ValueError(f"bad settings: test_fraction={test_fraction} must lie in (0, 1) when no test_data is given")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if test_data is not None and test_data.targets.shape[1] != data.targets.shape[1]:
        raise ValueError(f"test_data has {test_data.targets.shape[1]} outputs, data has {data.targets.shape[1]}")


def train_classifiers(
    models: Sequence[torch.nn.Module],
    data: TrainingSet,
    *,
    seeds: Sequence[int],
    test_fraction: float = 1 / 6,
    test_data: TrainingSet | None = None,
    epochs: int = 40,
    lr: float = 0.1,
    batch_size: int | None = 32,
    record_at: Sequence[int] = (),
    record_every: int = 0,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    on_record: Recorder | None = None,
    record: bool = True,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[pd.DataFrame]:
    """:func:`train_classifier` for S networks of one architecture at once: ``models[s]`` is trained with ``seeds[s]``.

    Network ``s`` ends as :func:`train_classifier` (``model=models[s]``, ``seed=seeds[s]``, the other arguments the
    same) would leave it, up to float rounding: its split and minibatch order come from its own
    ``torch.Generator().manual_seed(seeds[s])`` drawn exactly as there, and the loss is the sum over the networks of
    each one's loss, so no gradient mixes networks; SGD and Adam act per element, so one optimiser over the stacked
    parameters is S optimisers. The networks are held as one batched model (parameters stacked on a leading seed
    axis, one autograd graph, one optimiser step per minibatch for all S networks; circular convolutions with
    kernels larger than half the maps are computed in Fourier space for all networks at once, see ``_Stacked``).

    Speed (measured on 2 shared CPU cores, one thread, against S calls of :func:`train_classifier`): 2.5–5× for the
    cue-conflict 15×15 CNNs (the Fourier path), about 1.3× for the small full-batch CNNs of the mode-stages chapter,
    parity within the noise for 3×3 stacks, whose oneDNN convolutions dominate either way.

    Supported models: ``nn.Sequential`` networks of ``Conv2d`` (stride 1, zero or circular padding), ``Linear``,
    ``ReLU``, ``Identity``, ``AvgPool2d`` and ``Flatten`` — :class:`~how_cnns_learn.models.MLPClassifier`,
    :class:`~how_cnns_learn.models.ConvClassifier` and :class:`~how_cnns_learn.models.SmallReLUCNN`; anything else
    raises ``TypeError``. All networks must share one class, layer configuration, dtype and device.

    ``on_record(model)`` is called for each network ``models[s]`` in turn (its parameters are views of the stacks,
    so it sees the current weights). Returns one table per network, as :func:`train_classifier` returns (the train
    loss and test accuracy are computed by the batched model); the networks are trained in place. ``record=False``
    trains only: no row is recorded, not even at epoch 0 and at the end (it saves the forward passes of the train
    loss and the test accuracy, 7–14 % of a 12-epoch cue-conflict run, measured, when the caller evaluates the
    trained networks itself), and the tables are empty; ``record_at``, ``record_every`` and ``on_record`` must then
    be unset.
    The training itself (weights, minibatch order) is the same either way.
    """
    nets = list(models)
    seed_list = [int(s) for s in seeds]
    if not nets:
        raise ValueError("models is empty: give at least one network")
    if len(seed_list) != len(nets):
        raise ValueError(f"seeds has {len(seed_list)} entries for {len(nets)} models: give one seed per network")
    _check_classifier_settings(data, test_data, test_fraction, epochs, lr, batch_size, record_every, loss, optimizer)
    if not record and (len(record_at) or record_every or on_record is not None):
        raise ValueError(f"record=False records nothing, but record_at={tuple(record_at)}, "
                         f"record_every={record_every}, on_record={on_record!r} ask for records: unset them or drop "
                         "record=False")
    dev = check_device(device)
    for net in nets:
        net.to(dev)
    stacked = _Stacked(nets)
    S = stacked.S
    dtype, _ = _model_dtype_device(nets[0])
    ran_on = record_device(nets[0], by="train_classifiers")

    X, Y, y = _as_tensors(data, dtype, dev)
    generators = [torch.Generator().manual_seed(s) for s in seed_list]
    if test_data is None:
        orders = [torch.randperm(len(y), generator=g) for g in generators]
        n_test = int(round(test_fraction * len(y)))
        train = torch.stack([o[n_test:] for o in orders])  # (S, N_train)
        test = torch.stack([o[:n_test] for o in orders]).to(dev)
        X_test, y_test, shared_test = X[test], y[test], False  # (S, N_test, 1, n, n), (S, N_test)
    else:
        train = torch.arange(len(y)).expand(S, -1)
        X_test, _, y_test = _as_tensors(test_data, dtype, dev)
        shared_test = True
    shared_train = test_data is not None
    optimiser = plain_optimiser(stacked.parameters(), optimizer, lr)
    n_train = train.shape[1]
    batch_size = n_train if batch_size is None else batch_size
    full_batch = shared_train and batch_size >= n_train  # every network sees every item: one shared input

    def objective(out: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
        """Per-network losses ``(S,)`` of outputs ``(S, B, p)`` on items ``batch`` ``(S, B)`` (None: all, in order)."""
        if loss == "mse":
            target = Y[: out.shape[1]].expand(S, -1, -1) if batch is None else Y[batch]
            return _squared_error(out, target).mean(1)
        labels = y[: out.shape[1]].expand(S, -1) if batch is None else y[batch]
        return F.cross_entropy(out.flatten(0, 1), labels.flatten(), reduction="none").view(S, -1).mean(1)

    tables: list[list[dict[str, Any]]] = [[] for _ in range(S)]
    step = 0
    train_dev = train.to(dev)

    def snapshot(epoch: int) -> None:
        with torch.no_grad():
            correct = stacked(X_test, shared=shared_test)
            accuracy = (correct.argmax(2) == y_test).to(dtype).mean(1).tolist()
            if shared_train:
                losses = objective(stacked(X, shared=True), None).tolist()
            else:
                losses = objective(stacked(X[train_dev], shared=False), train_dev).tolist()
            for s, net in enumerate(nets):
                row = {"epoch": epoch, "step": step, "train loss": losses[s], "test accuracy": accuracy[s]}
                if hasattr(net, "filter_norms"):
                    row["norms"] = net.filter_norms
                if on_record is not None:
                    row.update(dict(on_record(net)))
                tables[s].append(row)

    if record:
        snapshot(0)
    for epoch in progress_bar(range(1, epochs + 1), enabled=progress, leave=False, desc="epochs"):
        shuffled = torch.stack([train[s][torch.randperm(n_train, generator=g)] for s, g in enumerate(generators)]).to(dev)
        for start in range(0, n_train, batch_size):
            optimiser.zero_grad()
            if full_batch:  # the same items for every network; their order changes only the summation order
                objective(stacked(X, shared=True), None).sum().backward()
            else:
                batch = shuffled[:, start : start + batch_size]
                objective(stacked(X[batch], shared=False), batch).sum().backward()
            optimiser.step()
            step += 1
        if record and (epoch in record_at or epoch == epochs or (record_every and epoch % record_every == 0)):
            snapshot(epoch)
    stacked.release()
    result = []
    for rows in tables:
        table = pd.DataFrame(rows)
        table.attrs["device"] = str(ran_on)
        result.append(table)
    return result


def _outputs(model: torch.nn.Module, images: NDArray[np.floating]) -> NDArray[np.floating]:
    """:func:`model_outputs` through the batched forward of :func:`train_classifiers` where the model allows it (the
    same outputs up to float rounding; Fourier-space convolutions for large circular kernels), else the model itself."""
    try:
        stacked = _Stacked([model], bind=False)
    except (TypeError, ValueError):
        return model_outputs(model, images)
    dtype, device = _model_dtype_device(model)
    with torch.no_grad():
        out = stacked(torch.as_tensor(np.asarray(images), dtype=dtype, device=device).unsqueeze(1), shared=True)[0]
    return out.cpu().double().numpy()


def evaluate_cue_conflict(model: torch.nn.Module, cue: CueConflictData) -> pd.DataFrame:
    """Accuracy of a trained classifier on each test set of :func:`~how_cnns_learn.data.cue_conflict`, and its cue preference.

    Returns a tidy table with one row per measure (column ``measure``, value in ``value``): the accuracy on
    ``"both cues"``, ``"shape only"``, ``"texture only"``, and, for the conflict images, the fractions classified by
    their shape (``"follows shape"``) and by their texture (``"follows texture"``); the two need not add up to 1.
    The outputs come from the batched forward of :func:`train_classifiers` where the model allows it (Fourier-space
    convolutions for large circular kernels: the same outputs as the model's up to float rounding).
    """
    rows = []
    for name, test in cue.tests.items():
        predicted = _outputs(model, test.inputs).argmax(1)
        if name == "conflict":
            rows.append({"measure": "follows shape", "value": float(np.mean(predicted == test.targets.argmax(1)))})
            rows.append({"measure": "follows texture", "value": float(np.mean(predicted == cue.conflict_texture))})
        else:
            rows.append({"measure": f"accuracy, {name}", "value": float(np.mean(predicted == test.targets.argmax(1)))})
    return pd.DataFrame(rows)


def train_weight_decay(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module], torch.Tensor],
    *,
    weight_decay: float,
    steps: int,
    lr: float,
    lr_final: float | None = None,
    optimizer: Literal["adam", "gd"] = "adam",
    record_every: int = 100,
    on_record: Recorder | None = None,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
    desc: str = "training",
) -> pd.DataFrame:
    """Full-batch training of ``loss_fn(model) + (λ/2)‖θ‖²``, ``λ = weight_decay`` (explicit L2 penalty on all
    trainable parameters, written into the objective, so Adam sees it as part of the gradient).

    The learning rate decays geometrically from ``lr`` to ``lr_final`` (default: constant). ``loss_fn`` must compute
    on ``device`` (the model is moved there; put the data it closes over there too). A tqdm progress bar is shown
    when ``progress`` is true (default: only when stderr is a terminal, so executed notebooks stay quiet).
    Returns a tidy table with columns ``step, loss, sq_norm, objective`` (``sq_norm`` is ``‖θ‖²``, ``objective``
    is ``loss + (λ/2)·sq_norm``) every ``record_every`` steps and at the end, plus the columns of ``on_record``;
    ``attrs["device"]`` is where it ran.
    """
    if steps < 1 or lr <= 0 or weight_decay < 0 or record_every < 1:
        raise ValueError(f"need steps >= 1, lr > 0, weight_decay >= 0, record_every >= 1; got steps={steps}, "
                         f"lr={lr}, weight_decay={weight_decay}, record_every={record_every}")
    if optimizer not in ("adam", "gd"):
        raise ValueError(f"optimizer must be 'adam' or 'gd', got {optimizer!r}")
    dev = check_device(device)
    model.to(dev)
    ran_on = record_device(model, by="train_weight_decay")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = plain_optimiser(params, optimizer, lr)
    gamma = (lr_final / lr) ** (1.0 / steps) if lr_final is not None else 1.0  # lr ← lr·γ (torch's ExponentialLR)
    half_decay = weight_decay / 2  # the penalty (λ/2)‖θ‖²
    rows = []
    show = sys.stderr.isatty() if progress is None else progress
    for step in progress_bar(range(steps + 1), desc=desc, enabled=show, mininterval=2.0):
        opt.zero_grad()
        loss = loss_fn(model)
        sq = sum((p**2).sum() for p in params)
        obj = loss + half_decay * sq
        if step % record_every == 0 or step == steps:
            row = {"step": step, "loss": loss.item(), "sq_norm": float(sq.detach()), "objective": obj.item()}
            if on_record is not None:
                with torch.no_grad():
                    row.update(dict(on_record(model)))
            rows.append(row)
        if step == steps:
            break
        if not torch.isfinite(obj):
            raise FloatingPointError(f"objective became {obj.item()} at step {step}; lower the learning rate")
        obj.backward()
        opt.step()
        opt.lr = opt.lr * gamma
    table = pd.DataFrame(rows)
    table.attrs["device"] = str(ran_on)
    return table
