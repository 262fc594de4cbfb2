"""The `topreward` command: one entry point, one subcommand per workflow.

Each subcommand lives in the module that owns its logic and registers itself
here through ``register(subparsers)``; this file only dispatches, so running
``topreward --help`` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in help order.
SUBCOMMAND_MODULES = (
    "topreward_ros.commands.score",
    "topreward_ros.commands.bag",
    "topreward_ros.commands.lerobot",
    "topreward_ros.commands.eval",
    "topreward_ros.commands.relabel",
    "topreward_ros.commands.check",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="topreward", description="Zero-shot task progress and success from a video VLM (TOPReward)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("topreward: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
