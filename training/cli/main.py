"""The ``precision-gym`` entry point: the parser built from the command modules.

Each command module registers its subcommand with ``add_parser(subparsers)`` (a parser with
``set_defaults(func=...)``, ``func(args) -> int``) and takes what commands share from
:mod:`training.cli.common`. To add a command, write such a module and list it in
:data:`COMMAND_MODULES`. Only the console script, ``python -m training.cli`` and programs that
drive the command line (tests, benchmarks) import this module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from training import calibrate, grpo, kl_collect, kl_st, quantize_cli, sb3_baselines, sweep
from training.cli import demo, evaluate
from training.cli.common import execute, new_parser

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: the subcommands, in the order ``precision-gym --help`` lists them
COMMAND_MODULES: tuple[ModuleType, ...] = (
    evaluate,
    demo,
    kl_collect,
    kl_st,
    calibrate,
    sweep,
    grpo,
    sb3_baselines,
    quantize_cli,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``precision-gym`` parser with every command of :data:`COMMAND_MODULES`."""
    parser, subparsers = new_parser()
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``precision-gym ARGV``; returns the exit status."""
    return execute(build_parser(), argv)
