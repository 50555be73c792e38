"""The shared command-line pieces of training.cli.common: argument types, flag groups,
dataclass configs as flags, commands registering themselves, and a command module run alone."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from conftest import ROOT

from training.cli.common import (
    add_command,
    add_config_parser,
    budgets,
    execute,
    json_kwargs,
    new_parser,
    probability,
    seeds,
)
from training.cli.main import COMMAND_MODULES, build_parser


def test_argument_types_name_expected_and_actual():
    assert seeds("0, 1,2") == [0, 1, 2] and budgets("0.2,0.4") == [0.2, 0.4]
    with pytest.raises(argparse.ArgumentTypeError, match=r"integers like 0,1,2, got 'a,b'"):
        seeds("a,b")
    with pytest.raises(argparse.ArgumentTypeError, match="needs at least one integer"):
        seeds(",")
    with pytest.raises(argparse.ArgumentTypeError, match=r"numbers in \[0, 1\].*got '0.2,1.5'"):
        budgets("0.2,1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object, got list"):
        json_kwargs("[1]")
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \[0, 1\], got 2.0"):
        probability("2")


@dataclass
class _Config:
    env_id: str = field(default="DMR-WebShop-v0", metadata={"help": "env"})
    kinds: list[str] = field(default_factory=list, metadata={"help": "kinds"})
    budgets: tuple[float, ...] = field(default=(0.2, 0.4), metadata={"help": "K"})
    scale: float | None = field(default=None, metadata={"help": "scale"})
    flag: bool = field(default=True, metadata={"help": "flag"})


def test_a_config_dataclass_is_one_flag_per_field():
    parser, sub = new_parser()
    seen = []
    p = add_config_parser(sub, "run", _Config, seen.append, help="run it", doc="First.\n\nMore.")
    assert p.description == "First." and "(default: 0.2,0.4)" in p.format_help()
    argv = ["run", "--env", "x", "--kinds", "a", "b", "--budgets", "0.5", "--scale", "2"]
    assert execute(parser, [*argv, "--no-flag"]) == 0
    args = seen[0]
    assert (args.env_id, args.kinds, args.budgets, args.scale, args.flag) == (
        "x", ["a", "b"], (0.5,), 2.0, False,
    )  # fmt: skip


def test_a_command_takes_its_help_from_its_docstring_and_errors_exit_2(capsys):
    def cmd_fail(args: argparse.Namespace) -> int:
        """fail on purpose

        (details that the one-line help leaves out)"""
        raise ValueError("expected X, got Y")

    parser, sub = new_parser()
    add_command(sub, "fail", cmd_fail)
    assert "fail on purpose" in parser.format_help() and "details" not in parser.format_help()
    assert execute(parser, ["fail"]) == 2
    assert "precision-gym fail: error: expected X, got Y" in capsys.readouterr().err


def test_every_command_module_registers_one_documented_command():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) == len(COMMAND_MODULES)
    assert all(action.help for action in sub._choices_actions)


def test_a_command_module_runs_alone_without_the_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "training.grpo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: precision-gym train-grpo")
