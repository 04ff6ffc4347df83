"""Command line of the library: ``python -m how_cnns_learn predict DATA [--simulate] [--out DIR]``.

A thin dispatcher; the logic is :mod:`how_cnns_learn.predict` (importable and tested).
"""

from __future__ import annotations

import sys

COMMANDS = ("predict",)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: python -m how_cnns_learn {{{','.join(COMMANDS)}}} ...  (predict --help for its options)", file=sys.stderr)
        return 2
    from .predict import main as predict_main

    return predict_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
