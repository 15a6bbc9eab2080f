"""The `dear-ray` command.

The parser is assembled here from the command modules (`dear_ray.commands`: each adds its
subcommands' arguments and holds one function per subcommand that calls the package); imports of
the package are lazy so that `dear-ray --help` does not import torch or Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dear_ray.commands import data, evaluate, run, scores, sweep
from dear_ray.commands._common import CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dear-ray",
        description="Open-set and debiased video action recognition (DEAR, SDN) on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in (data, run, sweep, evaluate, scores):
        commands.add_parsers(sub)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A Python warning as one console line (no source file and echoed source line)."""
    return f"dear-ray: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"dear-ray: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Configuration, data and tracking errors carry messages that name the file, field or
        # value at fault: show that line, not a traceback (DEAR_RAY_DEBUG=1 shows it).
        if os.environ.get("DEAR_RAY_DEBUG"):
            raise
        print(f"dear-ray: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatwarning


__all__ = ["CliError", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
