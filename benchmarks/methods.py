"""Speed and memory of the methods side by side: the same engine as ``peftbench bench``.

    python benchmarks/methods.py --backbone dinov2-s --threads 1 --json benchmarks/results/cpu-dinov2-s.json

Options as for ``peftbench bench --help``.
"""

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline backbones only: a hub call would stall before failing

from peftbench.bench import add_parser, cmd_bench  # noqa: E402
from peftbench.errors import UsageError  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="benchmarks/methods.py")
    add_parser(parser.add_subparsers(dest="command", parser_class=_Parser))
    try:
        return cmd_bench(parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)]))
    except UsageError as exc:
        print(f"benchmarks/methods.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
