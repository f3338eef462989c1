"""The `stoker` command: a thin shell over stoker.Loader.

    stoker demo                      stoker vs PyTorch's DataLoader, one table
    stoker bench URI [--json] ...    images/s, CPU per image, RSS, stalls, stages
    stoker profile URI [--json] ...  per-stage rates, the bottleneck, a what-if, a trace
    stoker ls URI                    what a dataset holds
    stoker convert SRC DST           write a dataset as shards (lossless, crop-aware)
    stoker gen DIR                   a synthetic ImageNet-like JPEG folder

Each subcommand lives in its own module with add_parser(subparsers), which
registers it and sets `func`; main() parses and dispatches. With --json a
subcommand prints exactly one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

import stoker

# Modules that define a subcommand, in the order `stoker --help` lists them.
SUBCOMMANDS = ("stoker.cli.demo", "stoker.cli.bench", "stoker.cli.profile", "stoker.cli.ls",
               "stoker.cli.convert", "stoker.datagen")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stoker", description="stoker: storage to tensors, fast.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"stoker {stoker.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    # Errors about the user's input (a dataset that cannot be read, a bad
    # option) get one line; STOKER_DEBUG=1 shows the traceback.
    except (stoker.Error, FileNotFoundError, FileExistsError, ValueError) as e:
        if os.environ.get("STOKER_DEBUG"):
            raise
        print(f"stoker {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
