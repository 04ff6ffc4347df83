"""The shared training core: the book's torch trainers for any model, and the cue-conflict evaluation.

The full-batch linear simulators (:mod:`~how_cnns_learn.simulate`) integrate closed-form gradients of many networks
at once; everything that trains an ordinary ``torch.nn.Module`` by autograd lives here, for every paper of the book:

* :func:`train_classifier` — minibatch SGD or Adam on images ``(N, 1, n, n)`` → outputs ``(N, p)``, cross-entropy or
  the mean squared loss of the linear theory;
* :func:`train_weight_decay` — full-batch training of ``loss_fn(model) + (λ/2)‖θ‖²`` (the convolution bottleneck);
* :func:`evaluate_cue_conflict` and :func:`model_outputs` — evaluation of a trained classifier.

**Conventions (one for every trainer here).**

* *Weight decay.* ``weight_decay = λ`` always means the penalty ``(λ/2)‖θ‖²`` added to the loss, i.e. the gradient
  ``λθ`` (the decoupled step ``θ ← θ − η(∇L + λθ)``), as in :mod:`~how_cnns_learn.simulate` and
  :mod:`~how_cnns_learn.theory`. A penalty written ``λ'‖θ‖²`` is ``weight_decay = 2λ'``.
* *Recording.* A trainer records at step (or epoch) 0, every ``record_every`` and at the end; at each recorded point
  it calls ``on_record(model)`` (if given) under ``torch.no_grad()``, and every ``name: value`` the callback returns
  becomes a column of that row. The callback must not change the model. Nothing else is recorded inside the loop.
* *Device.* Every trainer takes ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``;
  validated by :func:`~how_cnns_learn.repro.check_device`), moves the model there, reports where it ran to
  :func:`~how_cnns_learn.repro.record_device` (the chapter footer prints it) and stores it in the returned table's
  ``attrs["device"]``. Data a caller's ``loss_fn`` closes over must live on the same device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from .data import CueConflictData, TrainingSet
from .repro import check_device, progress_bar, record_device

__all__ = [
    "Recorder",
    "evaluate_cue_conflict",
    "model_outputs",
    "train_classifier",
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
    dev = check_device(device)
    model.to(dev)
    dtype, _ = _model_dtype_device(model)
    ran_on = record_device(model, by="train_classifier")

    def tensors(d: TrainingSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        X = torch.as_tensor(d.inputs, dtype=dtype, device=dev).unsqueeze(1)
        Y = torch.as_tensor(d.targets, dtype=dtype, device=dev)
        return X, Y, Y.argmax(1)

    X, Y, y = tensors(data)
    generator = torch.Generator().manual_seed(seed)
    if test_data is None:
        order = torch.randperm(len(y), generator=generator)
        n_test = int(round(test_fraction * len(y)))
        test, train = order[:n_test], order[n_test:]
        X_test, y_test = X[test.to(dev)], y[test.to(dev)]
    else:
        train = torch.arange(len(y))
        X_test, _, y_test = tensors(test_data)
    optimiser = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=lr)
    batch_size = len(train) if batch_size is None else batch_size

    def objective(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if loss == "mse":
            return 0.5 * ((out - Y[batch]) ** 2).sum(1).mean()
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


def evaluate_cue_conflict(model: torch.nn.Module, cue: CueConflictData) -> pd.DataFrame:
    """Accuracy of a trained classifier on each test set of :func:`~how_cnns_learn.data.cue_conflict`, and its cue preference.

    Returns a tidy table with one row per measure (column ``measure``, value in ``value``): the accuracy on
    ``"both cues"``, ``"shape only"``, ``"texture only"``, and, for the conflict images, the fractions classified by
    their shape (``"follows shape"``) and by their texture (``"follows texture"``); the two need not add up to 1.
    """
    rows = []
    for name, test in cue.tests.items():
        predicted = model_outputs(model, test).argmax(1)
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
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    gamma = (lr_final / lr) ** (1.0 / steps) if lr_final is not None else 1.0
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    half_decay = weight_decay / 2  # the penalty (λ/2)‖θ‖²
    rows = []
    show = sys.stderr.isatty() if progress is None else progress
    for step in progress_bar(range(steps + 1), desc=desc, enabled=show, mininterval=2.0):
        opt.zero_grad(set_to_none=True)
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
        sched.step()
    table = pd.DataFrame(rows)
    table.attrs["device"] = str(ran_on)
    return table
