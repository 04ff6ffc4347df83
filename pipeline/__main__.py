"""Command line: ``python -m pipeline execute|stage|chapters|reference-timings``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .execute import (
    BuildPaths,
    ChapterFailed,
    base_parameters,
    chapters,
    default_jobs,
    default_scheduler,
    execute_book,
    find_chapter,
    write_reference_timings,
)
from .stage import stage


def _extra_parameters(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        out[name] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute chapters with papermill (cached; in parallel on Dask)")
    ex.add_argument("names", nargs="*", help="chapter stems (default: all)")
    ex.add_argument("--mode", choices=["quick", "full"], default="quick")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--device", default="auto")
    ex.add_argument("--timeout", type=int, default=1200, help="per-cell execution timeout in seconds")
    ex.add_argument("--force", action="store_true", help="ignore the cache")
    ex.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="extra chapter parameter")
    ex.add_argument("--build-root", type=Path, default=None,
                    help="write notebooks, claim records and keys under this folder instead of _build (e.g. one per seed)")
    ex.add_argument("--jobs", type=int, default=None,
                    help="worker processes of the local Dask cluster (default: $JOBS, else the number of cores)")
    ex.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="a running Dask scheduler, e.g. tcp://host:8786 (default: $SCHEDULER, else a local cluster)")
    ref = sub.add_parser("reference-timings", help="write the committed timing table that orders a fresh clone's first run")
    ref.add_argument("tables", nargs="+", type=Path, help="timings.json of whole-book runs (quick and full)")
    sub.add_parser("stage", help="stage executed chapters and the status page into _build/src")
    sub.add_parser("chapters", help="list chapter stems")
    args = parser.parse_args(argv)
    try:
        if args.command == "chapters":
            print("\n".join(c.stem for c in chapters()))
        elif args.command == "execute":
            params = {**base_parameters(args.mode, args.seed, args.device), **_extra_parameters(args.param)}
            selected = [find_chapter(n) for n in args.names] if args.names else chapters()
            paths = BuildPaths(args.build_root.resolve()) if args.build_root else BuildPaths()
            jobs = default_jobs() if args.jobs is None else args.jobs
            if jobs < 1:
                raise ValueError(f"--jobs must be at least 1, got {jobs}")
            execute_book(selected, params, paths, timeout=args.timeout, force=args.force, jobs=jobs,
                         scheduler=args.scheduler or default_scheduler())  # prints the timing table
        elif args.command == "reference-timings":
            print(write_reference_timings(args.tables))
        elif args.command == "stage":
            print(stage())
    except (ChapterFailed, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
