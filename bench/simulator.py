"""Benchmark: the linear-CNN simulator against the per-network loop and the strongest batched autograd baseline.

Usage: ``make bench`` (``make bench DEVICE=cuda``), or ``python bench/simulator.py [--quick] [--device cuda]
[--out-dir bench/results]`` (writes ``bench/results/<cpu|cuda>.md``).

Problem (the same for every contender): data set D1 at image size ``n`` (``data.designed_structure(n)``, its three
items), ``B`` two-layer linear CNNs with a full-size kernel, float64, full-batch GD with η = 0.02 from the same
initial weights (σ = 0.01), ``STEPS`` steps, the mode strengths ``a_α(t)`` recorded every ``RECORD`` steps.

Contenders:

* **simulator**: ``simulate.train_linear_cnn`` (per-frequency form: weights in Fourier coordinates, no FFT per step;
  records only at recorded steps), as a user calls it: with a full-size kernel it steps only the ``F_a`` frequencies
  at which the data have power (D1: 9 of the ``F = n(n/2+1)`` half-spectrum frequencies at every ``n``; the others
  provably never move and never reach the outputs), and records on them.
* **simulator, all frequencies**: the same with ``restrict_frequencies=False`` (every frequency stepped), so that the
  table shows how much comes from the per-frequency form and how much from the data's spectral support.
* **(a) loop**: what a user writes first: ``models.LinearCNN`` (``nn.Conv2d`` circular + ``nn.Linear``), autograd and
  ``torch.optim.SGD``, one network after another. Its time is linear in ``B``; it is timed on a subset of the
  networks and scaled (the table says how many).
* **(b) batched autograd**: the strongest baseline written here (about 60 lines): all ``B`` networks in one tensor,
  autograd (``torch.autograd.grad``), in-place ``torch.no_grad`` updates, float64, no Python loop over networks, in two
  forms: *fft* (end-to-end map ``M = irfft2(Σ_c rfft2(W_c)·conj(rfft2(r_c)))``, predictions ``M Xᵀ``) and *conv*
  (one grouped circular ``conv2d`` of the data with all ``B·C`` kernels, then the dense layer as one ``einsum``). Both
  are timed once per size; the faster one is the baseline at that size (the table names it).

Every contender's recorded ``a_α(t)`` must agree with the simulator's to 1e-9 (absolute; ``s`` is 1 to 3): the
script fails otherwise. Times are the wall time of whole runs (after a warm-up run), ``--repeats`` times,
interleaved; the ratios are baseline/simulator per repeat, shown as min/median/max. The achieved floating-point
rate is the simulator's counted flops per step (see ``simulator_flops``) over its time per step, against the peak
of a large float64 matrix product measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from how_cnns_learn import data, fourier, models, simulate

LR, SIGMA, RECORD = 0.02, 1e-2, 10
TOLERANCE = 1e-9


def problem(n: int, B: int):
    """D1 at size n, its items, and the initial weights of B networks (full-size kernel, one channel)."""
    structure = data.designed_structure(n=n)
    train = data.structure_items(structure)
    W0, r0 = simulate.random_cnn_init(list(range(B)), n, n, structure.p, SIGMA)
    return structure, train, W0, r0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _recorder(train, structure, device):
    """a_α = u_αᵀ Σ_ŷx φ_α from predictions (B, p, N): w Σ_iμ U_iα ŷ_iμ (x_μ·φ_α)."""
    p, d = structure.p, structure.n**2
    X_phi = torch.as_tensor(train.flat_inputs @ structure.phi.reshape(p, d).T, device=device)  # (N, p)
    U = torch.as_tensor(structure.U, device=device)
    w = train.item_weight
    return lambda pred: w * torch.einsum("ia,bin,na->ba", U, pred, X_phi)


def run_simulator(train, structure, W0, r0, steps, device, restrict_frequencies=True):
    run = simulate.train_linear_cnn(train, structure, lr=LR, steps=steps, init=(W0, r0), record_every=RECORD,
                                    device=device, restrict_frequencies=restrict_frequencies)
    return run.mode_strength


def run_simulator_all(train, structure, W0, r0, steps, device):
    """The simulator stepping every half-spectrum frequency (no restriction to the data's spectral support)."""
    return run_simulator(train, structure, W0, r0, steps, device, restrict_frequencies=False)


def run_batched_fft(train, structure, W0, r0, steps, device):
    """(b) all networks in one tensor; FFT convolution of the weights; autograd."""
    n, w = structure.n, train.item_weight
    X = torch.as_tensor(train.flat_inputs, device=device)  # (N, n²)
    Yt = torch.as_tensor(train.targets.T, device=device)  # (p, N)
    W = torch.tensor(W0, device=device, requires_grad=True)  # (B, p, C, n, n)
    r = torch.tensor(r0, device=device, requires_grad=True)  # (B, C, n, n), full-size kernel
    record = _recorder(train, structure, device)

    def predict() -> torch.Tensor:
        lam = torch.fft.rfft2(r)
        M = torch.fft.irfft2((torch.fft.rfft2(W) * lam.conj().unsqueeze(1)).sum(2), s=(n, n)).flatten(-2)
        return M @ X.T  # (B, p, N)

    return _autograd_descent(predict, (W, r), Yt, w, steps, record)


def _autograd_descent(predict, params, Yt, w, steps, record):
    """Full-batch GD with autograd on ``L = (w/2)‖pred − Yᵀ‖²`` (every network's loss summed: the gradients of
    different networks do not mix); ``record(pred)`` every RECORD steps and at the end. Returns (records, B, p)."""
    out = []
    for k in range(steps + 1):
        pred = predict()
        if k % RECORD == 0 or k == steps:
            with torch.no_grad():
                out.append(record(pred))
        if k == steps:
            break
        loss = 0.5 * w * ((pred - Yt) ** 2).sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for param, grad in zip(params, grads):
                param.sub_(grad, alpha=LR)
    return torch.stack(out).cpu().numpy()


def run_batched_conv(train, structure, W0, r0, steps, device):
    """(b) all networks in one tensor; one grouped circular conv2d of the data with every kernel; autograd."""
    n, w = structure.n, train.item_weight
    B, p, C = W0.shape[:3]
    X = torch.as_tensor(train.inputs, device=device).unsqueeze(1)  # (N, 1, n, n)
    total = n - 1
    X_pad = F.pad(X, (total // 2, total - total // 2, total // 2, total - total // 2), mode="circular")
    Yt = torch.as_tensor(train.targets.T, device=device)
    weights = np.stack([[fourier.kernel_to_cross_correlation_weight(rc, n) for rc in rb] for rb in r0])  # (B, C, n, n)
    K = torch.tensor(weights.reshape(B * C, 1, n, n), device=device, requires_grad=True)
    W = torch.tensor(W0, device=device, requires_grad=True)
    record = _recorder(train, structure, device)

    def predict() -> torch.Tensor:
        features = F.conv2d(X_pad, K).view(-1, B, C, n, n)  # (N, B, C, n, n): same as Conv2d(padding="same", circular)
        return torch.einsum("nbcxy,bpcxy->bpn", features, W)

    return _autograd_descent(predict, (W, K), Yt, w, steps, record)


def run_loop(train, structure, W0, r0, steps, device):
    """(a) one models.LinearCNN per network, autograd, torch.optim.SGD, a Python loop over the networks."""
    n, p = structure.n, structure.p
    X = torch.as_tensor(train.inputs, device=device)
    Y = torch.as_tensor(train.targets, device=device)
    record = _recorder(train, structure, device)
    out = []
    for b in range(W0.shape[0]):
        model = models.LinearCNN(n, n, p).to(device)
        model.load_embedded(W0[b], r0[b])
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        rows = []
        for k in range(steps + 1):
            pred = model(X)
            if k % RECORD == 0 or k == steps:
                rows.append(record(pred.detach().T[None])[0])
            if k == steps:
                break
            opt.zero_grad()
            (0.5 * train.item_weight * ((pred - Y) ** 2).sum()).backward()
            opt.step()
        out.append(torch.stack(rows))
    return torch.stack(out, 1).cpu().numpy()


BASELINES = {"fft": run_batched_fft, "conv": run_batched_conv}


def simulator_flops(n: int, B: int, p: int, N: int, C: int = 1, active: int | None = None) -> float:
    """Real flops of one simulator step on N < n² items (the item-factored path): complex ×: 6, complex +: 2.

    With ``active = F_a`` (the restricted path: ``F_a`` frequencies): ``M̂ = Ŵ conj(λ)`` (6·B·p·C·F_a, + the sum over
    channels 2·B·p·(C−1)·F_a), ``MXᵀ`` (4·B·p·N·F_a), the errors (3·B·p·N), ``R̂ = E X̂`` (4·B·p·N·F_a), ``Ŵ conj(R̂)``
    summed over outputs (8·B·p·C·F_a), ``λR̂`` (6·B·p·C·F_a), ``Ŵ += η·`` (4·B·p·C·F_a), ``λ += η·`` (4·B·C·F_a).
    Without it (every frequency):

    With F = n(n/2 + 1) half-spectrum frequencies and D = 2F real coordinates: ``Z = λ ⊙ ĝx`` (6·B·N·C·F), ``MXᵀ``
    (2·B·p·N·C·D), the kernel gradient ``Σ_μ conj(x̂_μ)(EᵀŴ)_μ`` (2·B·N·p·C·D + 6·B·N·C·F + 2·B·N·C·F), ``λ ⊙ x̂``
    (6·B·N·C·F), ``Ŵ += η E (λx̂)`` (2·B·p·N·C·D + 2·B·p·C·D) and ``λ += η g`` (4·B·C·F); the errors (3·B·p·N).
    """
    if active is not None:
        return B * p * C * active * 24 + 2 * B * p * (C - 1) * active + 8 * B * p * N * active + 3 * B * p * N \
            + 4 * B * C * active
    F_ = n * (n // 2 + 1)
    D = 2 * F_
    return B * C * F_ * (20 * N + 4) + 6 * B * p * N * C * D + 2 * B * p * C * D + 3 * B * p * N


def peak_flops(device: torch.device) -> float:
    """float64 rate of a large matrix product (the machine's practical peak for this dtype), flop/s."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, dtype=torch.float64, device=device)
    b = torch.randn(size, size, dtype=torch.float64, device=device)
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def timed(fn, *args, device) -> tuple[float, np.ndarray]:
    _sync(device)
    start = time.perf_counter()
    out = fn(*args, device)
    _sync(device)
    return time.perf_counter() - start, out


def compare(n: int, B: int, steps: int, repeats: int, loop_networks: int, device: torch.device,
            loop_time: dict | None = None) -> dict:
    """One size: agreement of every contender with the simulator, and the timed ratios.

    Both batched baselines are timed on a tenth of the steps (at least 10) to choose the faster; the chosen one and
    the simulator (restricted to the data's frequencies, and on all frequencies) are then timed on ``steps`` steps,
    ``repeats`` times, interleaved. The loop's time per network does
    not depend on ``B``: it is measured once per ``n`` (``loop_time`` caches it) on ``loop_networks`` networks.
    """
    structure, train, W0, r0 = problem(n, B)
    args = (train, structure, W0, r0)
    run_simulator(*args, 2, device)  # warm-up (allocator, FFT plans)
    run_simulator_all(*args, 2, device)
    probe = max(10, steps // 10)
    _, a_probe = timed(run_simulator, *args, probe, device=device)
    first = {}
    for name, fn in BASELINES.items():
        fn(*args, 2, device)
        t, a = timed(fn, *args, probe, device=device)
        diff = float(np.abs(a - a_probe).max())
        if not diff < TOLERANCE:
            raise SystemExit(f"n={n}, B={B}: batched autograd ({name}) differs from the simulator by {diff:.2e}")
        first[name] = t
    best = min(first, key=first.get)
    sims, sims_all, strong = [], [], []
    for repeat in range(repeats):
        t_sim, a_sim = timed(run_simulator, *args, steps, device=device)
        t_all, a_all = timed(run_simulator_all, *args, steps, device=device)
        t_strong, a_strong = timed(BASELINES[best], *args, steps, device=device)
        sims.append(t_sim)
        sims_all.append(t_all)
        strong.append(t_strong)
        if repeat == 0:
            for name, a in ((f"batched autograd ({best})", a_strong), ("the simulator on all frequencies", a_all)):
                diff_k = float(np.abs(a - a_sim).max())
                if not diff_k < TOLERANCE:
                    raise SystemExit(f"n={n}, B={B}: {name} differs from the simulator by {diff_k:.2e}")
            diff = max(float(np.abs(a_strong - a_sim).max()), float(np.abs(a_all - a_sim).max()))
    loop_time = {} if loop_time is None else loop_time
    m = min(loop_networks, B)
    if (n, steps) not in loop_time:
        run_loop(train, structure, W0[:1], r0[:1], 2, device)
        t_loop, a_loop = timed(run_loop, train, structure, W0[:m], r0[:m], steps, device=device)
        loop_time[(n, steps)] = (t_loop / m, a_loop[:, :1])
    per_network, a_loop = loop_time[(n, steps)]
    loop_diff = float(np.abs(a_loop - a_sim[:, :1]).max())  # network 0 has the same init at every B
    if not loop_diff < TOLERANCE:
        raise SystemExit(f"n={n}, B={B}: the per-network loop differs from the simulator by {loop_diff:.2e}")
    ratios = sorted(s / t for s, t in zip(strong, sims))
    ratios_all = sorted(s / t for s, t in zip(strong, sims_all))
    sim_median, all_median = statistics.median(sims), statistics.median(sims_all)
    active = int(simulate._data_frequencies(train.inputs).sum())
    p, N = structure.p, train.inputs.shape[0]
    return {
        "n": n, "B": B, "steps": steps,
        "F_a / F": f"{active} / {n * (n // 2 + 1)}",
        "simulator [ms/step]": 1e3 * sim_median / steps,
        "sim, all freq. [ms/step]": 1e3 * all_median / steps,
        "baseline (b)": best,
        "(b) [ms/step]": 1e3 * statistics.median(strong) / steps,
        "(b)/sim min": ratios[0], "(b)/sim median": statistics.median(ratios), "(b)/sim max": ratios[-1],
        "(b)/sim all freq. median": statistics.median(ratios_all),
        "(a) loop [ms/step]": 1e3 * per_network * B / steps,
        "(a)/sim": per_network * B / sim_median,
        "max |Δa|": max(diff, loop_diff),
        "sim Gflop/s": simulator_flops(n, B, p, N, active=active) * steps / sim_median / 1e9,
        "all freq. Gflop/s": simulator_flops(n, B, p, N) * steps / all_median / 1e9,
    }


def machine(device: torch.device, peak: float) -> str:
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        where = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"
    return (f"{where}; torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); Python {platform.python_version()}; "
            f"measured float64 matrix-product peak {peak / 1e9:.1f} Gflop/s; load average at the end "
            f"{os.getloadavg()[0]:.1f} (other processes share the cores: times are wall times)")


def markdown(rows: list[dict], header: str) -> str:
    keys = list(rows[0])
    lines = [header, "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: n = 8, B ∈ {1, 8}, few steps, one repeat")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda when torch sees one)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per size (default 3; quick 1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="GD steps per run (default 400, 200 for n = 32 on the CPU; quick 40)")
    parser.add_argument("--out-dir", default=None, help="write the table (markdown) to OUT_DIR/<cpu|cuda>.md")
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    torch.backends.cuda.matmul.allow_tf32 = False
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = [(8, 1), (8, 8)] if args.quick else [(n, B) for n in (8, 16, 32) for B in (1, 8, 64, 256)]
    peak = peak_flops(device)
    print(machine(device, peak), flush=True)
    rows: list[dict] = []
    loop_time: dict = {}
    for n, B in sizes:
        steps = args.steps or (40 if args.quick else 400 if n < 32 or device.type == "cuda" else 200)
        row = compare(n, B, steps, repeats, loop_networks=1 if args.quick else 2, device=device, loop_time=loop_time)
        rows.append(row)
        print({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    largest = rows[-1]
    header = (f"# Simulator benchmark ({device.type})\n\nMachine: {machine(device, peak)}.\n\n"
              f"Command: `python bench/simulator.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
              f"{repeats} repeat(s); D1, full-size kernel, float64, η = {LR}, σ = {SIGMA}, a_α recorded every "
              f"{RECORD} steps. F_a / F: the frequencies the data carry (which the simulator steps) of the n(n/2+1) "
              f"half-spectrum frequencies; 'sim, all freq.': the same simulator stepping all F. (b)/sim: the "
              f"strongest batched autograd baseline (the faster form, named) over the simulator, per repeat "
              f"(min/median/max), and its median over the simulator on all frequencies; (a)/sim: the per-network "
              f"loop (its time per network, measured once per n on {1 if args.quick else 2} networks, times B). "
              f"At the largest size the simulator runs at {largest['sim Gflop/s']:.3g} Gflop/s "
              f"({largest['sim Gflop/s'] * 1e9 / peak:.2%} of the measured float64 peak, {peak / 1e9:.1f} Gflop/s; "
              f"it does little arithmetic per step and is bound by per-operation overhead), on all frequencies at "
              f"{largest['all freq. Gflop/s']:.3g} Gflop/s ({largest['all freq. Gflop/s'] * 1e9 / peak:.2%}).")
    table = markdown(rows, header)
    print("\n" + table)
    if args.out_dir:
        out = Path(args.out_dir) / f"{device.type}{'-quick' if args.quick else ''}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
        print(f"written: {out}")
    return rows


if __name__ == "__main__":
    main()
