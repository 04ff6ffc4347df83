"""Fault injection: prove that the book's claims catch realistic mistakes in the library.

Each :class:`Fault` is a textual patch of one line of ``lib/how_cnns_learn`` (a plausible bug: a dropped factor,
the wrong normalisation, an off-by-one). :func:`run_fault` copies the library to a scratch folder, applies the
patch there (the repository is never touched), puts the copy first on ``PYTHONPATH`` so that the chapter kernels
import it, and executes the listed chapters in quick mode. A fault is *caught* when at least one chapter fails;
the table names the claims that failed. A patch whose original text is no longer found is an error (the list must
be kept in step with the library), so faults cannot silently stop applying.

``python -m pipeline.faults`` (``make faults``) runs them all, prints the table and writes
``_build/faults.json``, which the reproduction-status page shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .execute import BUILD, LIB, BuildPaths, ChapterFailed, base_parameters, execute_chapter, find_chapter

PACKAGE = LIB / "how_cnns_learn"
RECORD = BUILD / "faults.json"


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    file: str  # relative to lib/how_cnns_learn
    old: str
    new: str
    chapters: tuple[str, ...]


FAULTS: tuple[Fault, ...] = (
    Fault("stage-rate-without-phi-star", "stage width uses the FCNN rate: the Φ* factor is dropped",
          "theory.py", 'return LN9 / (_positive("rate_factor", rate_factor) * _positive("s", s)',
          'return LN9 / (1.0 * _positive("s", s)', ("cnn_stages_ordered_transitions",)),
    Fault("growth-law-factor-2", "growth law without its factor 2: d|λ|²/dt = |Φ|(s − a)|λ|²/τ",
          "theory.py", "return 2.0 * np.asarray(phi_amplitude, dtype=float)", "return 1.0 * np.asarray(phi_amplitude, dtype=float)",
          ("linear_cnn_gradient_flow",)),
    Fault("unitary-dft-in-phi-star", "Φ* computed with the unitary DFT (divided by n) instead of the unnormalised one",
          "fourier.py", "return np.abs(dft2(stack)).reshape(stack.shape[0], -1).max(axis=1)",
          "return np.abs(dft2(stack)).reshape(stack.shape[0], -1).max(axis=1) / stack.shape[-1]",
          ("dataset_structure_and_dominant_frequencies", "cnn_stages_ordered_transitions")),
    Fault("subdominant-instead-of-dominant", "Φ* taken at the second-largest frequency pair (an off-by-one in a sorted spectrum)",
          "fourier.py", "return np.abs(dft2(stack)).reshape(stack.shape[0], -1).max(axis=1)",
          "return np.sort(np.abs(dft2(stack)).reshape(stack.shape[0], -1), axis=1)[:, -3]",
          ("dataset_structure_and_dominant_frequencies", "order_of_discovery")),
    Fault("ln3-in-width", "10→90 % width with ln 3 instead of ln 9", "theory.py",
          "LN9 = float(np.log(9.0))", "LN9 = float(np.log(3.0))",
          ("deep_linear_networks_stages", "cnn_stages_ordered_transitions")),
    Fault("conserved-quantity-sign", "per-frequency invariant with the wrong sign: n²|ŵ|² + |λ|²", "simulate.py",
          "return (_power(self.W_hat).sum(1) - _power(self.lam)).flatten(1)",
          "return (_power(self.W_hat).sum(1) + _power(self.lam)).flatten(1)",
          ("linear_cnn_gradient_flow",)),
    Fault("balancedness-sign", "FCNN balancedness with the wrong sign: W₂ᵀW₂ + W₁W₁ᵀ", "simulate.py",
          "return (self.W2.transpose(1, 2) @ self.W2 - self.W1 @ self.W1.transpose(1, 2)).flatten(1)",
          "return (self.W2.transpose(1, 2) @ self.W2 + self.W1 @ self.W1.transpose(1, 2)).flatten(1)", ("deep_linear_networks_stages",)),
    Fault("circulant-off-by-one", "off-by-one in the circulant embedding: C[a, b] = r[a − b + 1]", "fourier.py",
          "d1 = (idx[:, None, None, None] - idx[None, None, :, None]) % n",
          "d1 = (idx[:, None, None, None] - idx[None, None, :, None] + 1) % n",
          ("convolution_is_diagonal_in_fourier_space",)),
    Fault("cross-correlation-not-flipped", "PyTorch's cross-correlation weight used as a convolution kernel without the flip",
          "fourier.py", "idx = (pl - np.arange(k)) % n", "idx = (np.arange(k) - pl) % n",
          ("convolution_is_diagonal_in_fourier_space",)),
    Fault("kernel-gradient-sign", "kernel gradient with the wrong sign (ascent on the kernel)", "simulate.py",
          "grad_r = -torch.fft.irfft2(", "grad_r = torch.fft.irfft2(", ("linear_cnn_gradient_flow",)),
    Fault("simulator-kernel-step-halved", "the simulator's full-size kernel step with η/2 (a dropped factor 2)",
          "simulate.py", "self.lam.add_(self._kernel_step, alpha=lr)", "self.lam.add_(self._kernel_step, alpha=lr / 2)",
          ("linear_cnn_gradient_flow",)),
    Fault("aligned-init-unbalanced", "aligned init with W₂ at scale a₀ instead of √a₀ (unbalanced)", "simulate.py",
          "W2 = np.sqrt(a0) * structure.U @ R.T", "W2 = a0 * structure.U @ R.T", ("deep_linear_networks_stages",)),
    Fault("closed-form-missing-2", "closed-form logistic with exponent g·s·t/τ instead of 2g·s·t/τ", "theory.py",
          "x = 2.0 * g * s_ * lr * np.asarray(steps, dtype=float)", "x = 1.0 * g * s_ * lr * np.asarray(steps, dtype=float)",
          ("deep_linear_networks_stages",)),
    Fault("race-clock-missing-2", "reduced race dynamics with rate η|Φ| instead of 2η|Φ|", "theory.py",
          "rates = 2.0 * lr * amplitude  # per step", "rates = 1.0 * lr * amplitude  # per step",
          ("dominant_frequency_bias",)),
    Fault("mean-instead-of-sum-loss", "the sum loss silently treated as a mean loss (item weight 1/N)", "data.py",
          'return 1.0 if self.reduction == "sum" else 1.0 / self.inputs.shape[0]', "return 1.0 / self.inputs.shape[0]",
          ("deep_linear_networks_stages",)),
    Fault("logit-in-log10", "logistic rate fitted with log10 instead of the natural log", "simulate.py",
          "np.log(frac[inside] / (1 - frac[inside]))", "np.log10(frac[inside] / (1 - frac[inside]))",
          ("order_of_discovery",)),
    Fault("width-from-midpoint", "stage width measured from the midpoint: t90 − t50 instead of t90 − t10", "simulate.py",
          '"width": times["t90"] - times["t10"]', '"width": times["t90"] - times["t50"]',
          ("cnn_stages_ordered_transitions",)),
    Fault("frequency-target-missing-1-over-n", "per-frequency target t_j without its 1/n (merged-stage rate off by n)",
          "theory.py", 'return np.einsum("ia,ajk->ijk", structure.U * structure.s, np.conj(spectrum)) / structure.n',
          'return np.einsum("ia,ajk->ijk", structure.U * structure.s, np.conj(spectrum))',
          ("shared_dominant_frequency_merged_stages",)),
    Fault("structure-power-s-not-squared", "small-kernel growth matrix built from s_α|Φ|² instead of s_α²|Φ|²",
          "theory.py", "power = (structure.s[:, None, None] ** 2 *", "power = (structure.s[:, None, None] *",
          ("small_kernels_couple_frequencies",)),
    Fault("key-patterns-swapped", "the key pattern of class +1 placed in class −1 samples and vice versa", "keypatterns.py",
          "np.where(y > 0, 1, 0)", "np.where(y > 0, 0, 1)", ("key_pattern_learning",)),
    Fault("dominant-map-unnormalised", "dominant-frequency interpolant without the 1/‖P_αφ_α‖² normalisation", "theory.py",
          "return (structure.U * (_mode_gains(structure, d) / norms)) @ projected",
          "return (structure.U * _mode_gains(structure, d)) @ projected", ("dominant_frequency_bias",)),
    Fault("cnn-shrinkage-without-phi-star", "weight-decay optimum of the CNN shrinks every mode by λ, like the FCNN",
          "theory.py", "g = np.maximum(structure.s - weight_decay / phi_star, 0.0)",
          "g = np.maximum(structure.s - weight_decay, 0.0)", ("one_lens_four_papers",)),
    Fault("weight-decay-halved", "the simulator's weight decay applies λ/2 instead of λ (penalty λ‖θ‖²/4)",
          "simulate.py",
          "(errors, X, lr, weight_decay)  # type: ignore[attr-defined]\n        else:\n"
          "            model.step(R.view(B, p, D), lr, weight_decay)",
          "(errors, X, lr, 0.5 * weight_decay)  # type: ignore[attr-defined]\n        else:\n"
          "            model.step(R.view(B, p, D), lr, 0.5 * weight_decay)",
          ("one_lens_four_papers",)),
    Fault("patch-agop-without-relu-gate", "key-pattern patch-AGOP ignores the ReLU gate (every filter counted as active)",
          "keypatterns.py", 'grads = np.einsum("snkr,r,srd->snkd", active.astype(float), run.a, run.W) / k',
          'grads = np.einsum("snkr,r,srd->snkd", np.ones_like(active, dtype=float), run.a, run.W) / k',
          ("one_lens_four_papers",)),
    Fault("agop-identity-unaveraged", "patch-AGOP through G = Wᵀ Ḡ W without the 1/N average over images", "agop.py",
          "G = W.T @ (gbar / N) @ W", "G = W.T @ gbar @ W", ("cnfa_filter_covariance_agop",)),
    Fault("star-drawn-in-every-channel", "the star data set draws its star in all three colour channels, not in two",
          "data.py", "ex[:2, row + q, cols.start + r : cols.stop + r] = 1.0",
          "ex[:3, row + q, cols.start + r : cols.stop + r] = 1.0", ("convrfm_kernel_feature_learning",)),
    Fault("mse-averaged-over-outputs", "classifier MSE averaged over the outputs too (divided by p): every stage runs "
          "p times slower", "training.py", "return 0.5 * ((out - target) ** 2).sum(-1)",
          "return 0.5 * ((out - target) ** 2).mean(-1)", ("mode_stages_relu_cnns",)),
    Fault("conflict-scored-by-shape", "cue-conflict images scored against their shape label instead of their texture",
          "training.py",
          'rows.append({"measure": "follows texture", "value": float(np.mean(predicted == cue.conflict_texture))})',
          'rows.append({"measure": "follows texture", "value": float(np.mean(predicted == test.targets.argmax(1)))})',
          ("cue_conflict_texture_shape",)),
    Fault("cbn-cost-exponent", "representation cost with s^{1/L} instead of s^{2/L}", "bottleneck.py",
          "return float(L / H.shape[0] * np.sum(s ** (2.0 / L)))", "return float(L / H.shape[0] * np.sum(s ** (1.0 / L)))",
          ("convolution_bottleneck_depth_cost",)),
    Fault("population-mse-missing-1-over-d", "population loss of the circular CNN without the 1/d of Parseval",
          "bottleneck.py", "return (diff.abs() ** 2).sum() / (model.widths[-1] * F)",
          "return (diff.abs() ** 2).sum() / model.widths[-1]", ("convolution_bottleneck_depth_cost",)),
    Fault("downsample-odd-samples", "down-sampling keeps the odd samples (a half-sample shift of the signal)",
          "bottleneck.py", "    return x[..., ::factor]", "    return x[..., 1::factor]",
          ("convolution_bottleneck_relu_downsampling",)),
)


@dataclass(frozen=True)
class FaultResult:
    fault: str
    description: str
    chapters: list[str]
    failed_claims: list[str]
    errors: list[str]

    @property
    def caught(self) -> bool:
        """Caught by a *result* claim: a fault that only a sanity check (or a crash) notices is a missing result."""
        return any(not c.endswith(" (sanity)") for c in self.failed_claims)


def _patched_copy(fault: Fault, folder: Path) -> Path:
    target = folder / "how_cnns_learn"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    path = target / fault.file
    text = path.read_text()
    count = text.count(fault.old)
    if count != 1:
        raise ValueError(f"fault {fault.name!r}: its original text occurs {count} times in {fault.file} (expected 1)")
    path.write_text(text.replace(fault.old, fault.new))
    return folder


def run_fault(fault: Fault, timeout: int = 600) -> FaultResult:
    """Execute the fault's chapters (quick mode) against a patched copy of the library."""
    failed, errors = [], []
    previous = os.environ.get("PYTHONPATH")
    with tempfile.TemporaryDirectory(prefix=f"fault-{fault.name}-") as tmp:
        lib_copy = _patched_copy(fault, Path(tmp) / "lib")
        os.environ["PYTHONPATH"] = os.pathsep.join([str(lib_copy)] + ([previous] if previous else []))
        try:
            for stem in fault.chapters:
                try:
                    execute_chapter(find_chapter(stem), base_parameters("quick", 0, "cpu"),
                                    BuildPaths(Path(tmp) / "build"), timeout=timeout, force=True)
                except ChapterFailed as err:
                    found = re.findall(r"(\[sanity\] )?\[FAIL\] ([a-z0-9-]+):", str(err))
                    ids = list(dict.fromkeys(f"{i} (sanity)" if sanity else i for sanity, i in found))
                    if ids:
                        failed += [f"{stem}:{i}" for i in ids]
                    else:
                        errors.append(f"{stem}: {str(err).splitlines()[0][:160]}")
        finally:
            if previous is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous
    return FaultResult(fault.name, fault.description, list(fault.chapters), failed, errors)


def table(results: list[FaultResult]) -> str:
    """Markdown table: fault (✓ when caught) and what caught it (claims that failed, each named with its chapter)."""
    caught = sum(r.caught for r in results)
    lines = [
        f"**Fault injection: caught {caught} of {len(results)}.**",
        "",
        "| fault: what is wrong | caught by (chapter: claim, or errors) |",
        "|---|---|",
    ]
    for r in results:
        by_chapter: dict[str, list[str]] = {}
        for item in r.failed_claims:
            chapter, _, claim = item.partition(":")
            by_chapter.setdefault(chapter, []).append(f"`{claim}`")
        evidence = "; ".join(f"{ch.replace('_', ' ')}: {', '.join(ids)}" for ch, ids in by_chapter.items())
        evidence = evidence or "; ".join(r.errors) or "none"
        mark = "✓" if r.caught else "✗ **not caught**"
        cells = [f"{mark} `{r.fault}`: {r.description}", evidence]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.faults [NAME ...]``: run the named faults (default: all); the record is written only
    for a run of all of them."""
    import sys

    names = sys.argv[1:] if argv is None else argv
    unknown = sorted(set(names) - {f.name for f in FAULTS})
    if unknown:
        raise SystemExit(f"unknown fault(s) {unknown}; known: {[f.name for f in FAULTS]}")
    selected = [f for f in FAULTS if not names or f.name in names]
    results = []
    for fault in selected:
        result = run_fault(fault)
        results.append(result)
        print(f"{fault.name:34s} caught={result.caught!s:5s} {', '.join(result.failed_claims)[:100]}", flush=True)
    if names:
        print("\n" + table(results))
        return 0 if all(r.caught for r in results) else 1
    BUILD.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps([asdict(r) | {"caught": r.caught} for r in results], indent=2))
    print("\n" + table(results))
    return 0 if all(r.caught for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
