"""Predict how a linear CNN and a linear FCNN learn *your* data set, and check the prediction by simulation.

The central object is a :class:`Prediction`: for a labelled image set ``(X, y)`` (``X`` ``(N, n, n)`` real, ``y``
``(N,)`` class labels, one-hot targets, mean squared loss, no preprocessing unless asked), the modes
``(s_α, u_α, φ_α)`` of ``Σ_yx`` (:meth:`~how_cnns_learn.data.TrainingSet.structure`), their dominant frequencies
and amplitudes ``Φ*_α``, the stage gains ``G_α`` of both networks (:func:`~how_cnns_learn.theory.stage_gains`:
``s_α`` for the FCNN, ``s_αΦ*_α`` for the CNN, or the merged gain ``n‖t_j‖`` where modes share dominant
frequencies), the predicted order (by decreasing gain) and 10→90 % widths ``τ ln 9/G_α`` in steps at a learning
rate ``η`` below the stability limit (:func:`~how_cnns_learn.theory.check_learning_rate`), and how far the data
are from the theory's assumptions (A1: the modes diagonalise ``Σ_xx``; modes with their own dominant frequencies).

:func:`simulate_stages` trains both networks through the library's simulators and measures each stage;
:func:`write_outputs` writes a JSON of the numbers and the figures. The command line
``python -m how_cnns_learn predict DATA`` (:func:`main`) runs the three steps.

Input formats (:func:`load_dataset`):

* an ``.npz`` file with arrays ``X`` ``(N, n, n)`` and ``y`` ``(N,)``;
* a directory of images (``.png`` read as grey levels in [0, 1], or ``.npy`` ``(n, n)`` arrays) with a
  ``labels.csv`` whose header is ``file,label`` (one row per image, ``file`` relative to the directory);
* the name of a bundled data set (:data:`BUNDLED`).

Bad input raises :class:`DataError` (a ``ValueError``) naming the file and what is wrong, before anything is
written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from . import data as data_mod
from . import fourier, simulate, theory
from .repro import progress_bar

__all__ = [
    "BUNDLED",
    "DataError",
    "FIGURES",
    "Prediction",
    "Simulation",
    "format_report",
    "gd_fitted_gain",
    "load_dataset",
    "main",
    "predict",
    "simulate_stages",
    "stage_figure",
    "theory_progress",
    "training_set",
    "write_outputs",
]

TARGET_GAIN_STEP = 0.1
"""Default learning rate: ``η = 0.1 / max G`` over both networks, so that the Euler term of gradient descent
(relative size ``ηG``) is at most 10 % and ten times below the stability limit ``ηG = 1``."""


class DataError(ValueError):
    """The data set cannot be used as given (the message names the file and what is wrong)."""


def _digits_subset(classes: Sequence[int]) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    keep = np.isin(bunch.target, classes)
    images = bunch.images[keep].astype(float) / 16.0
    return images - images.mean(axis=0, keepdims=True), bunch.target[keep].astype(np.int64)


BUNDLED: dict[str, tuple[str, Callable[[], tuple[NDArray[np.floating], NDArray[np.int64]]]]] = {
    "digits-0-3": (
        "scikit-learn's bundled handwritten digits of the classes 0, 1, 2 and 3 only (720 images, 8×8), scaled to "
        "[0, 1] and centred pixel by pixel. No other chapter uses this subset (the others use all ten classes); it is "
        "still the same digits, so it is not independent evidence from the real-digits chapter.",
        lambda: _digits_subset((0, 1, 2, 3)),
    ),
}
"""Bundled data sets by name: (description, loader returning ``(X, y)``)."""


def _read_npz(path: Path) -> tuple[NDArray[Any], NDArray[Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            missing = {"X", "y"} - keys
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {sorted(missing)}; an .npz data set needs 'X' (N, n, n) images and "
                    f"'y' (N,) labels, found {sorted(keys) or 'no arrays'}"
                )
            return archive["X"], archive["y"]
    except DataError:
        raise
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None


def _read_image(path: Path) -> NDArray[np.floating]:
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "I", "I;16", "F", "1", "P"):
                raise DataError(f"{path}: a {image.mode} image; the theory is for grey-level images (convert it to 'L')")
            array = np.asarray(image.convert("F"), dtype=float)
            scale = {"L": 255.0, "P": 255.0, "1": 255.0, "I;16": 65535.0}.get(image.mode, 1.0)
            return array / scale
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None


def _read_directory(folder: Path) -> tuple[NDArray[Any], NDArray[Any]]:
    labels_file = folder / "labels.csv"
    if not labels_file.is_file():
        raise DataError(f"{folder}: no labels.csv; an image folder needs labels.csv with the header 'file,label'")
    with labels_file.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{labels_file}: the header must name the columns 'file' and 'label', got {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{labels_file}: no rows")
    images, labels = [], []
    for number, row in enumerate(rows, start=2):
        image_path = folder / row["file"]
        if not image_path.is_file():
            raise DataError(f"{labels_file}, line {number}: image file {row['file']!r} not found in {folder}")
        image = _read_image(image_path)
        if images and image.shape != images[0].shape:
            raise DataError(f"{image_path}: shape {image.shape} differs from the first image's {images[0].shape}")
        images.append(image)
        labels.append(row["label"])
    return np.stack(images), np.asarray(labels)


def load_dataset(source: str | os.PathLike[str]) -> tuple[NDArray[np.floating], NDArray[np.int64], str]:
    """Read ``(X, y)`` from an ``.npz`` file, an image folder with ``labels.csv``, or a :data:`BUNDLED` name.

    Returns ``X`` ``(N, n, n)`` float64, ``y`` ``(N,)`` class indices ``0 … K−1`` (labels of any type, sorted), and a
    description. Validates shapes, values and labels (:class:`DataError`, naming the source).
    """
    name = str(source)
    if name in BUNDLED:
        description, loader = BUNDLED[name]
        X, y = loader()
        return _validated(X, y, name) + (description,)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (and not a bundled data set: {', '.join(BUNDLED)})")
    if path.is_dir():
        X, y = _read_directory(path)
        description = f"the images of {path} with the labels of {path / 'labels.csv'}"
    elif path.suffix.lower() == ".npz":
        X, y = _read_npz(path)
        description = f"the arrays X and y of {path}"
    else:
        raise DataError(f"{path}: expected an .npz file or a folder of images with labels.csv, got a {path.suffix or 'plain'} file")
    return _validated(X, y, str(path)) + (description,)


def _validated(X: Any, y: Any, where: str) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.dtype.kind not in "iuf":
        raise DataError(f"{where}: images X must be real numbers, got dtype {X.dtype}")
    if X.ndim != 3:
        hint = " (colour images: convert to grey levels first)" if X.ndim == 4 else ""
        raise DataError(f"{where}: images X must have shape (N, n, n), got {X.shape}{hint}")
    if X.shape[1] != X.shape[2]:
        raise DataError(f"{where}: images must be square (n × n), got {X.shape[1]} × {X.shape[2]}")
    if X.shape[1] < 2:
        raise DataError(f"{where}: images must be at least 2 × 2, got {X.shape[1]} × {X.shape[2]}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(f"{where}: labels y must have shape (N,) = ({X.shape[0]},), one per image, got {y.shape}")
    X = X.astype(float)
    if not np.all(np.isfinite(X)):
        bad = int((~np.isfinite(X)).any(axis=(1, 2)).sum())
        raise DataError(f"{where}: {bad} image(s) contain NaN or infinite values")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DataError(f"{where}: labels y contain NaN or infinite values")
    classes, index = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise DataError(f"{where}: all {y.size} labels are {classes[0]!r}; at least two classes are needed")
    return X, index.astype(np.int64).reshape(-1)


def training_set(X: NDArray[np.floating], y: NDArray[np.int64], centre: bool = False) -> data_mod.TrainingSet:
    """One-hot targets ``(N, K)``, the mean loss; ``centre=True`` first removes the mean image pixel by pixel."""
    images = X - X.mean(axis=0, keepdims=True) if centre else X
    return data_mod.TrainingSet(inputs=images, targets=np.eye(int(y.max()) + 1)[y], reduction="mean")


def _frequency_text(mask: NDArray[np.bool_]) -> str:
    """Dominant frequencies as signed pairs ``(k1, k2)``, one of each conjugate pair, e.g. ``"(0, 1) (1, 0)"``."""
    n = mask.shape[0]
    seen, out = set(), []
    for k1, k2 in zip(*np.nonzero(mask)):
        pair = tuple(int((k + n // 2) % n - n // 2) for k in (k1, k2))
        conj = tuple(int((-k + n // 2) % n - n // 2) for k in (k1, k2))
        if conj not in seen:
            seen.add(pair)
            out.append(f"({pair[0]}, {pair[1]})")
    return " ".join(out)


@dataclass(frozen=True)
class Prediction:
    """What the theory predicts for one data set (see the module docstring).

    Attributes:
        name, description: where the data came from.
        train: the training set as given (one-hot targets, mean loss); ``structure`` its modes.
        modes: one row per mode with ``s > 0`` (1-based ``mode``): ``s``, ``phi_star`` (``Φ*``), ``frequencies``
            (dominant pairs), ``d`` (``φᵀΣ_xxφ``), ``a1_residual`` (``‖Σ_xxφ − dφ‖/‖Σ_xxφ‖``, 0 under A1),
            ``d_spread`` (largest relative difference of ``d`` to a mode sharing its dominant frequency: the merged gain
            is derived for equal ``d``, i.e. ``Σ_xx ∝ I`` on the shared frequency; 0 without sharing), ``gain_cnn``,
            ``gain_fcnn`` (``G``), ``width_cnn``, ``width_fcnn`` (``τ ln 9/G`` in steps), ``gain_cnn_independent``
            (``sΦ*``, the one-mode formula).
        shared: pairs of modes whose dominant frequencies coincide (1-based).
        order_cnn, order_fcnn, order_s: predicted order of the stages (1-based modes, first learned first).
        lr: learning rate η; ``eta_gain``: ``η·max G`` (stable below 1).
        steps_cnn, steps_fcnn: run lengths that reach 90 % of every mode with margin (from the predicted midpoints);
            :func:`simulate_stages` doubles a run that falls short, up to ``max_steps``.
    """

    name: str
    description: str
    train: data_mod.TrainingSet
    structure: data_mod.DatasetStructure
    modes: pd.DataFrame
    shared: list[tuple[int, int]]
    order_cnn: list[int]
    order_fcnn: list[int]
    order_s: list[int]
    lr: float
    eta_gain: float
    init_scale: float
    steps_cnn: int
    steps_fcnn: int
    max_steps: int = 20000

    @property
    def k(self) -> int:
        """Number of modes with ``s > 0`` (``K − 1`` for centred images with ``K`` classes)."""
        return len(self.modes)

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON types."""
        return {
            "name": self.name,
            "description": self.description,
            "items": int(self.train.inputs.shape[0]),
            "image_side": int(self.structure.n),
            "classes": int(self.train.targets.shape[1]),
            "modes": json.loads(self.modes.to_json(orient="records")),
            "shared_dominant_frequencies": [list(pair) for pair in self.shared],
            "predicted_order": {"cnn": self.order_cnn, "fcnn": self.order_fcnn, "by s alone": self.order_s},
            "learning_rate": self.lr,
            "eta_times_max_gain": self.eta_gain,
            "init_scale": self.init_scale,
            "steps": {"cnn": self.steps_cnn, "fcnn": self.steps_fcnn},
        }


def _run_length(gains: NDArray[np.floating], s: NDArray[np.floating], lr: float, init_scale: float, n: int) -> int:
    """Steps to pass 90 % of the slowest mode with a 50 % margin: ``1.5 (ln(s/a₀) + ln 9)/(2ηG)``.

    ``a₀ = n²σ²`` over-estimates no start: a random init of scale σ gives aligned strengths of order ``σ²`` times
    the number of units, at most ``n²σ²`` here, and a smaller ``a₀`` would only lengthen the estimate.
    """
    a0 = (n * init_scale) ** 2
    t90 = (np.log(np.maximum(s / a0, 2.0)) + theory.LN9) / (2 * lr * gains)
    return int(math.ceil(1.5 * t90.max()))


def predict(
    train: data_mod.TrainingSet,
    *,
    name: str = "data",
    description: str = "",
    lr: float | None = None,
    init_scale: float = 1e-4,
    max_steps: int = 20000,
) -> Prediction:
    """The theory's prediction for ``train`` (see :class:`Prediction`); ``lr`` defaults to :data:`TARGET_GAIN_STEP`
    over the largest gain. Raises :class:`DataError` if ``Σ_yx = 0`` (nothing to learn) and ``ValueError`` if ``lr``
    is at or above the stability limit of either network (:func:`~how_cnns_learn.theory.check_learning_rate`).

    >>> X, y, _ = load_dataset("digits-0-3")
    >>> result = predict(training_set(X, y))
    >>> result.k, result.order_cnn, result.order_fcnn   # the CNN's gains put mode 3 before mode 2
    (3, [1, 3, 2], [1, 2, 3])
    """
    structure = train.structure()
    s = structure.s
    live = s > 1e-9 * max(float(s[0]), np.finfo(float).tiny)
    if not np.any(live):
        raise DataError(f"{name}: Σ_yx = 0 (the class means are all the same image): there is no structure to learn")
    k = int(live.sum())
    gains = {model: theory.stage_gains(structure, model)[:k] for model in ("cnn", "fcnn")}
    if lr is None:
        lr = TARGET_GAIN_STEP / max(gains["cnn"].max(), gains["fcnn"].max())
    eta_gain = max(theory.check_learning_rate(lr, structure, model) for model in ("cnn", "fcnn"))
    phi_star = fourier.dominant_amplitude(structure.phi)[:k]
    masks = fourier.dominant_frequency_mask(structure.phi)
    flat = structure.phi.reshape(structure.p, -1)[:k]
    sxx_phi = flat @ train.sigma_xx
    d = np.einsum("ai,ai->a", sxx_phi, flat)
    a1 = np.linalg.norm(sxx_phi - d[:, None] * flat, axis=1) / np.maximum(np.linalg.norm(sxx_phi, axis=1), 1e-300)
    shared = theory.shared_dominant_frequencies(structure)
    d_spread = np.zeros(k)  # the merged gain assumes equal input power d on the shared frequency (Σ_xx ∝ I there)
    for a, b in shared:
        if a <= k and b <= k:
            spread = abs(d[a - 1] - d[b - 1]) / max(d[a - 1], d[b - 1])
            d_spread[[a - 1, b - 1]] = np.maximum(d_spread[[a - 1, b - 1]], spread)
    modes = pd.DataFrame(
        {
            "mode": np.arange(1, k + 1),
            "s": s[:k],
            "phi_star": phi_star,
            "frequencies": [_frequency_text(masks[a]) for a in range(k)],
            "d": d,
            "a1_residual": a1,
            "d_spread": d_spread,
            "gain_cnn": gains["cnn"],
            "gain_cnn_independent": s[:k] * phi_star,
            "gain_fcnn": gains["fcnn"],
            "width_cnn": theory.LN9 / (lr * gains["cnn"]),
            "width_fcnn": theory.LN9 / (lr * gains["fcnn"]),
        }
    )

    def order(values: NDArray[np.floating]) -> list[int]:
        return [int(i) + 1 for i in np.argsort(-values, kind="stable")]

    steps = {m: _run_length(gains[m], s[:k], lr, init_scale, structure.n) for m in ("cnn", "fcnn")}
    if max(steps.values()) > max_steps:
        slow = int(np.argmin(gains["fcnn"])) + 1
        raise DataError(
            f"{name}: the slowest stage (mode {slow}, s = {s[slow - 1]:.3g}) needs about {max(steps.values())} steps at "
            f"η = {lr:.3g}, more than max_steps = {max_steps}; raise max_steps or drop the weakest classes"
        )
    return Prediction(
        name=name, description=description, train=train, structure=structure, modes=modes,
        shared=shared, order_cnn=order(gains["cnn"]),
        order_fcnn=order(gains["fcnn"]), order_s=order(s[:k]), lr=float(lr), eta_gain=float(eta_gain),
        init_scale=init_scale, steps_cnn=steps["cnn"], steps_fcnn=steps["fcnn"], max_steps=max_steps,
    )


@dataclass(frozen=True)
class Simulation:
    """Both networks trained on the data: the runs and, per (model, network, mode), the measured stage.

    ``stages`` columns: ``model`` (``"CNN"``/``"FCNN"``), ``network``, ``mode`` (1-based), ``t10``, ``t50``,
    ``t90``, ``width`` (steps; NaN where the level was not reached), ``gain`` (fitted logistic rate ``κ/(2η)``,
    NaN with fewer than 3 points in the rise), ``final`` (``a/s`` at the end). ``orders``: measured learning order
    per model, ``(B, k)`` (:func:`~how_cnns_learn.theory.learning_order`).
    """

    runs: dict[str, simulate.TrainingRun]
    stages: pd.DataFrame
    orders: dict[str, NDArray[np.int64]]
    seeds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "stages": json.loads(self.stages.to_json(orient="records")),
            "measured_order": {m: o.tolist() for m, o in self.orders.items()},
        }


def _stage_table(run: simulate.TrainingRun, s: NDArray[np.floating], k: int, lr: float, model: str) -> pd.DataFrame:
    rows = []
    frac_all = run.mode_strength[:, :, :k] / s[:k]
    for b in range(frac_all.shape[1]):
        for a in range(k):
            frac = frac_all[:, b, a]
            row: dict[str, Any] = {"model": model, "network": b, "mode": a + 1}
            for level in (10, 50, 90):
                above = np.flatnonzero(frac > level / 100)
                row[f"t{level}"] = float(run.steps[above[0]]) if above.size else math.nan
            row["width"] = row["t90"] - row["t10"]
            inside = (frac > 0.1) & (frac < 0.9)
            row["gain"] = (
                float(np.polyfit(run.steps[inside], np.log(frac[inside] / (1 - frac[inside])), 1)[0] / (2 * lr))
                if inside.sum() >= 3 else math.nan
            )
            row["final"] = float(frac[-1])
            rows.append(row)
    return pd.DataFrame(rows)


def simulate_stages(
    prediction: Prediction, *, seeds: Sequence[int] | int = (0, 1, 2), device: str = "cpu", progress: bool = False
) -> Simulation:
    """Train the linear CNN (one channel, full-size kernel) and the linear FCNN (64 hidden units) from small random
    init (``prediction.init_scale``) at ``prediction.lr`` through :mod:`~how_cnns_learn.simulate`, one network per
    seed, and measure every stage (recorded at every step)."""
    seed_list = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    common = dict(lr=prediction.lr, init_scale=prediction.init_scale, seeds=seed_list, device=device)
    jobs = {
        "CNN": lambda steps: simulate.train_linear_cnn(prediction.train, prediction.structure, steps=steps, **common),
        "FCNN": lambda steps: simulate.train_linear_fcnn(prediction.train, prediction.structure, steps=steps, **common),
    }
    k, s = prediction.k, prediction.structure.s
    runs = {}
    for model, job in progress_bar(jobs.items(), desc="training", enabled=progress, total=2):
        steps = prediction.steps_cnn if model == "CNN" else prediction.steps_fcnn
        run = job(steps)
        # a stage slower than predicted (the prediction can fail on real data): run again, twice as long, up to
        # prediction.max_steps; the stages are measured on the one run that contains them all
        while np.any(run.mode_strength[-1, :, :k] < 0.9 * s[:k]) and steps < prediction.max_steps:
            steps = min(2 * steps, prediction.max_steps)
            run = job(steps)
        runs[model] = run
    stages = pd.concat([_stage_table(run, s, k, prediction.lr, model) for model, run in runs.items()], ignore_index=True)
    orders = {}
    for model, run in runs.items():
        try:
            orders[model] = theory.learning_order(run, n_modes=k)
        except ValueError:  # a mode that never reached its midpoint: no order to report
            orders[model] = np.zeros((len(seed_list), 0), dtype=np.int64)
    return Simulation(runs=runs, stages=stages, orders=orders, seeds=seed_list)


def theory_progress(prediction: Prediction, simulation: Simulation, model: str) -> NDArray[np.floating]:
    """Predicted progress ``a_α/s_α`` at the recorded steps, ``(T, B, k)``: the logistic of rate ``2ηG_α`` through each
    network's measured midpoint (random init fixes no ``a₀``; the midpoint absorbs it). ``model``: ``"CNN"``/``"FCNN"``."""
    run, k = simulation.runs[model], prediction.k
    s = prediction.structure.s[:k]
    gains = prediction.modes["gain_cnn" if model == "CNN" else "gain_fcnn"].to_numpy()
    t50 = simulation.stages[simulation.stages.model == model].pivot(index="network", columns="mode", values="t50").to_numpy()
    t50 = np.where(np.isfinite(t50), t50, run.steps[-1])
    # logistic_through's rate is 2η·g·s with the rate factor g: here g = G/s
    return theory.logistic_through(run.steps[:, None, None], s, t50[None], prediction.lr, gains / s) / s


FIGURES = ("widths", "stages-cnn", "stages-fcnn")
"""The figures of :func:`stage_figure`, by name."""


def stage_figure(prediction: Prediction, simulation: Simulation, name: str) -> Any:
    """One figure of the comparison (a matplotlib ``Figure``, in the book's style):

    * ``"widths"``: measured 10→90 % widths per network (bars = mean, dots = networks) against the predicted widths
      ``τ ln 9/G_α`` (diamonds), per mode and network;
    * ``"stages-cnn"``, ``"stages-fcnn"``: progress ``a_α/s_α`` (solid, median and range over networks) against the
      logistic of the predicted gain through each network's measured midpoint (dashed), residual underneath.
    """
    from . import plotting

    if name not in FIGURES:
        raise ValueError(f"name must be one of {FIGURES}, got {name!r}")
    plotting.set_book_style()
    if name == "widths":
        table = simulation.stages.copy()
        predicted = {"CNN": prediction.modes["width_cnn"].to_numpy(), "FCNN": prediction.modes["width_fcnn"].to_numpy()}
        table["theory"] = [predicted[m][a - 1] for m, a in zip(table["model"], table["mode"])]
        return plotting.bars_with_theory(table, x="mode", y="width", hue="model", theory="theory",
                                         ylabel="stage width 10→90 % [steps]")
    model = "CNN" if name == "stages-cnn" else "FCNN"
    run, k = simulation.runs[model], prediction.k
    s = prediction.structure.s[:k]
    return plotting.theory_vs_simulation(
        run.steps, run.mode_strength[:, :, :k] / s, theory_progress(prediction, simulation, model),
        labels=[f"mode {a + 1}" for a in range(k)], ylabel=f"{model} progress $a_\\alpha/s_\\alpha$",
    )


def gd_fitted_gain(gains: NDArray[np.floating], lr: float, steps: int = 4000) -> NDArray[np.floating]:
    """The gain the 10→90 % logistic fit reads off the exact gradient-descent map of one aligned, balanced unit.

    The map ``c ← c + ηc(G − c²)`` (:func:`~how_cnns_learn.theory.mode_strength_discrete`, progress ``c²/G``) rises
    slightly faster than the flow (the Euler term, relative ``O(ηG)``); what it leaves out of a network's stage
    (alignment, balance) is of relative order ``(ηG)²``. Returns ``κ/(2η)`` per gain, ``(k,)``; needs ``ηG < 1``.
    """
    g = np.atleast_1d(np.asarray(gains, dtype=float))
    theory.check_learning_rate(lr, data_mod.DatasetStructure(np.eye(1), [g.max()], np.full((1, 1, 1), 1.0)), "fcnn")
    length = int(min(steps, math.ceil(3 * (np.log(1e6) + theory.LN9) / (2 * lr * g.min()))))
    path = theory.mode_strength_discrete(length, g, 1e-6 * g, lr)  # the 10–90 % fit drops the start
    return simulate.fit_logistic_rate(np.arange(length + 1), path[:, None, :], g)[0] / (2 * lr)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename it into place (never a half-written file)."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_outputs(out: str | os.PathLike[str], prediction: Prediction, simulation: Simulation | None = None) -> list[Path]:
    """Write ``prediction.json`` (and with a simulation the figures ``widths.png``, ``stages-cnn.png``,
    ``stages-fcnn.png``) into ``out`` (created if needed). Returns the paths written."""
    folder = Path(out)
    payload = {"prediction": prediction.to_dict()}
    figures: dict[str, Any] = {}
    if simulation is not None:
        payload["simulation"] = simulation.to_dict()
        figures = {name: stage_figure(prediction, simulation, name) for name in FIGURES}  # drawn before any write
    text = json.dumps(payload, indent=2, allow_nan=True)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures.items():
        path = folder / f"{name}.png"
        _atomic_write(path, lambda tmp, f=figure: f.savefig(tmp, format="png", bbox_inches="tight"))
        written.append(path)
    path = folder / "prediction.json"
    _atomic_write(path, lambda tmp: tmp.write_text(text))
    written.append(path)
    if figures:
        from . import plotting

        plotting.close(*figures.values())  # release the figures' memory
    return written


def format_report(prediction: Prediction, simulation: Simulation | None = None) -> str:
    """The text the command prints: the data set, its modes, the predicted stages and, if run, the measured ones."""
    p = prediction
    lines = [
        f"data: {p.name}: {p.description}",
        f"{p.train.inputs.shape[0]} images {p.structure.n}×{p.structure.n}, {p.train.targets.shape[1]} classes, "
        f"{p.k} modes with s > 0; mean loss; learning rate η = {p.lr:.4g} (η·max G = {p.eta_gain:.3f}, stable below 1)",
        "",
        "modes (Σ_yx = Σ s_α u_α φ_αᵀ; G = stage gain; widths in steps):",
        p.modes.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        "",
        "modes sharing dominant frequencies: "
        + (", ".join(f"{a} & {b}" for a, b in p.shared) if p.shared else "none (no two modes have the same dominant pair)"),
        "CNN gain n‖t_j‖ vs the one-mode formula sΦ*: up to "
        f"{100 * (p.modes['gain_cnn'] / p.modes['gain_cnn_independent'] - 1).abs().max():.0f} % apart "
        "(other modes' components at a mode's dominant frequencies join its unit's target)",
    ]
    uneven = p.modes[p.modes["d_spread"] > 0.01]
    if len(uneven):
        lines.append(
            f"WARNING: modes {uneven['mode'].tolist()} share a dominant frequency but carry unequal input power d "
            f"(relative difference up to {uneven['d_spread'].max():.0%}); the merged gain is derived for equal d "
            "(Σ_xx ∝ I on the shared frequency): their CNN gains are not reliable predictions"
        )
    lines += [
        f"predicted order, linear CNN:  {p.order_cnn}",
        f"predicted order, linear FCNN: {p.order_fcnn}   (by s alone: {p.order_s})",
        f"A1 (modes diagonalise Σ_xx): largest residual {p.modes['a1_residual'].max():.3f} (0 when it holds)",
    ]
    if simulation is not None:
        summary = simulation.stages.groupby(["model", "mode"])[["t50", "width", "gain", "final"]].mean()
        lines += ["", f"simulated ({len(simulation.seeds)} networks per model, mean):",
                  summary.to_string(float_format=lambda v: f"{v:.4g}")]
        for model, order in simulation.orders.items():
            lines.append(f"measured order, {model}: " + ("; ".join(str(list(map(int, row))) for row in order) or "a mode never reached s/2"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m how_cnns_learn predict DATA [--simulate] [--out DIR] ...``; returns the exit status."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m how_cnns_learn predict",
        description="Predict the stages in which a linear CNN and a linear FCNN learn a labelled image set "
        "(.npz with X (N, n, n) and y (N,); a folder of .png/.npy images with labels.csv 'file,label'; or a bundled "
        f"name: {', '.join(BUNDLED)}), and optionally check the prediction by training both.",
    )
    parser.add_argument("data", help="an .npz file, an image folder with labels.csv, or a bundled data set name")
    parser.add_argument("--simulate", action="store_true", help="train both networks and measure the stages")
    parser.add_argument("--out", type=Path, default=None, help="folder for prediction.json (and the figures with --simulate)")
    parser.add_argument("--lr", type=float, default=None, help=f"learning rate η (default {TARGET_GAIN_STEP} / max gain)")
    parser.add_argument("--networks", type=int, default=3, help="networks per model with --simulate (seeds 0 … N−1)")
    parser.add_argument("--centre", action="store_true", help="remove the mean image pixel by pixel first")
    parser.add_argument("--max-steps", type=int, default=20000, help="refuse data sets that need longer runs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the simulators' device)")
    args = parser.parse_args(argv)
    try:
        if args.networks < 1:
            raise DataError(f"--networks must be >= 1, got {args.networks}")
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            raise DataError(f"--out {args.out}: exists and is not a folder")
        X, y, description = load_dataset(args.data)
        prediction = predict(training_set(X, y, centre=args.centre), name=str(args.data), description=description,
                             lr=args.lr, max_steps=args.max_steps)
        simulation = (
            simulate_stages(prediction, seeds=list(range(args.networks)), device=args.device, progress=True)
            if args.simulate else None
        )
    except ValueError as err:  # DataError, or a learning rate above the stability limit
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(prediction, simulation))
    if args.out is not None:
        for path in write_outputs(args.out, prediction, simulation):
            print(f"wrote {path}")
    return 0
