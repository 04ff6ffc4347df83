"""Benchmark: torch intra-op threads 1 vs 2 on the book's chapter-sized simulations (run side by side).

Usage: ``make bench-threads`` (or ``python bench/threads.py``). Each configuration runs in a fresh
subprocess with ``OMP_NUM_THREADS`` set, so torch's thread pool is configured as in a chapter kernel.
Prints the median wall time over repeats and the ratio, on an idle machine and with one other
CPU-bound process running; the Makefile's ``OMP_NUM_THREADS ?= 1`` default is chosen from this
measurement (2 threads gain up to ~1.6x on large idle batches but lose 3-5x under contention).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

BATCHED = """
import time
from how_cnns_learn import data, simulate
st = data.designed_structure()
train = data.structure_items(st)
simulate.train_linear_fcnn(train, st, lr=0.01, steps=50, seeds=[0])  # warm-up
t = time.perf_counter()
simulate.train_linear_fcnn(train, st, lr=0.01, steps=2000, hidden=64, seeds=list(range({batch})))
print(time.perf_counter() - t)
"""

# What a reader writes: one small torch network, autograd, many tiny ops per step.
AUTOGRAD = """
import time, torch
torch.manual_seed(0)
conv = torch.nn.Conv2d(1, 1, 8, padding=4, padding_mode="circular", bias=False).double()
dense = torch.nn.Linear(81, 3, bias=False).double()
x, y = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
opt = torch.optim.SGD(list(conv.parameters()) + list(dense.parameters()), lr=0.01)
t = time.perf_counter()
for _ in range({batch} * 100):
    opt.zero_grad()
    loss = 0.5 * ((dense(conv(x).flatten(1)) - y) ** 2).sum()
    loss.backward()
    opt.step()
print(time.perf_counter() - t)
"""


def time_config(workload: str, threads: int, batch: int, repeats: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    runs = [
        float(subprocess.run([sys.executable, "-c", workload.format(batch=batch)], env=env, capture_output=True,
                             text=True, check=True).stdout)
        for _ in range(repeats)
    ]
    return statistics.median(runs)


def table(title: str) -> None:
    print(title)
    print(f"{'workload':<34} {'1 thread [s]':>13} {'2 threads [s]':>14} {'ratio 2/1':>10}")
    cases = [("batched FCNN, 2000 steps", BATCHED, b) for b in (3, 10, 64)]
    cases += [("autograd conv net, 100 steps", AUTOGRAD, b) for b in (3, 10)]
    for name, workload, batch in cases:
        one, two = time_config(workload, 1, batch, 3), time_config(workload, 2, batch, 3)
        label = f"{name} x{batch}"
        print(f"{label:<34} {one:13.3f} {two:14.3f} {two / one:10.2f}")


def main() -> None:
    table("idle machine")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # e.g. a second job on a 2-core CI runner
    try:
        table("\none other CPU-bound process running")
    finally:
        busy.kill()


if __name__ == "__main__":
    main()
