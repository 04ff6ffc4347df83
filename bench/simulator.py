"""Benchmark: the batched FFT simulator against what a user would write (run side by side, one process).

Usage: ``make bench`` (or ``python bench/simulator.py [--quick]``).

Baseline: ``models.LinearCNN`` (``nn.Conv2d(1, 1, n, padding="same", padding_mode="circular", bias=False)``
+ ``nn.Linear``), autograd and ``torch.optim.SGD``, one network at a time in a Python loop over seeds,
recording the mode strengths ``a_α(t)`` from the predictions at every step. Fast path:
``simulate.train_linear_cnn`` training all ``B`` networks at once in the Fourier domain. Same problem for
both: data set D1 at image size ``n``, full-size kernel, full-batch GD, η = 0.01, σ = 1e-4, 2,000 steps,
float64, the same initial weights. Reported: wall time of each, the ratio, and the maximum difference of
the recorded ``a_α(t)`` trajectories (must be < 1e-8: the fast path computes the same thing).

Where the baseline would take minutes (large ``n``), it is timed on a subset of the seeds and scaled
linearly to ``B`` (its seeds run one after another, so its time is linear in ``B``); the table says so.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from how_cnns_learn import data, models, simulate

STEPS, LR, SIGMA = 2000, 0.01, 1e-4


def baseline(train, structure, W0, r0, steps):
    """What a user would write: one torch model per seed, autograd, a Python loop. Returns (T, B, p)."""
    n, p = structure.n, structure.p
    X, Y = torch.tensor(train.inputs), torch.tensor(train.targets)
    out = np.empty((steps + 1, W0.shape[0], p))
    for b in range(W0.shape[0]):
        model = models.LinearCNN(n, n, p)
        model.load_embedded(W0[b], r0[b])
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for k in range(steps + 1):
            pred = model(X)
            out[k, b] = simulate.mode_strengths(pred.detach().numpy(), train, structure)
            if k == steps:
                break
            opt.zero_grad()
            (0.5 * train.item_weight * ((pred - Y) ** 2).sum()).backward()
            opt.step()
    return out


def compare(n: int, B: int, baseline_seeds: int, steps: int = STEPS) -> dict:
    structure = data.designed_structure(n=n)
    train = data.structure_items(structure)
    W0, r0 = simulate.random_cnn_init(list(range(B)), n, n, structure.p, SIGMA)
    start = time.perf_counter()
    fast = simulate.train_linear_cnn(train, structure, lr=LR, steps=steps, init=(W0, r0))
    t_fast = time.perf_counter() - start
    m = min(baseline_seeds, B)
    start = time.perf_counter()
    slow = baseline(train, structure, W0[:m], r0[:m], steps)
    t_slow = (time.perf_counter() - start) * B / m
    diff = np.abs(slow - fast.mode_strength[:, :m]).max()
    return {"n": n, "B": B, "baseline seeds timed": m, "baseline [s]": t_slow, "fast [s]": t_fast,
            "speed-up": t_slow / t_fast, "max |Δa|": diff}


def scaling(n_values, B_values, steps: int = STEPS) -> list[dict]:
    rows = []
    for n in n_values:
        structure = data.designed_structure(n=n)
        train = data.structure_items(structure)
        for B in B_values:
            start = time.perf_counter()
            simulate.train_linear_cnn(train, structure, lr=LR, steps=steps, seeds=list(range(B)))
            elapsed = time.perf_counter() - start
            rows.append({"n": n, "B": B, "fast [s]": elapsed, "µs per network-step": 1e6 * elapsed / (B * steps)})
    return rows


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    print(" | ".join(f"{k:>20}" for k in keys))
    for row in rows:
        print(" | ".join(f"{row[k]:>20.3g}" if isinstance(row[k], float) else f"{row[k]:>20}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer baseline seeds for n > 8 (a smoke run)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {torch.get_num_threads()}")
    print(f"\nfast path vs baseline: D1, {STEPS} steps, float64, B = 64 networks")
    subset = 2 if args.quick else 8
    rows = [compare(8, 64, 4 if args.quick else 64), compare(16, 64, subset), compare(32, 64, subset // 2 or 1)]
    print_table(rows)
    failed = [r for r in rows if not r["max |Δa|"] < 1e-8]
    print("\nscaling of the fast path with B and n")
    print_table(scaling((8, 16, 32), (1, 8, 64)))
    if failed:
        raise SystemExit(f"trajectories differ by more than 1e-8: {failed}")


if __name__ == "__main__":
    main()
