"""What the ``precision-gym`` commands share: argument types and groups, a dataclass config as
flags, the env and policy from their command-line names, the SIMULATED banner, and the parser
scaffold with its error handling.

Command modules import from here and register their subcommand with ``add_parser(subparsers)``;
:mod:`training.cli.main` lists them. This module imports no command module, so any of them (and
the library code that builds envs and policies by name, such as rollout workers) can use it
without an import circle.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from precision_gym import DEFAULT_ENV_ID, ENV_IDS
from precision_gym.error import ConfigError, PrecisionGymError
from training.policies import load_policy  # the one policy loader, re-exported for commands

__all__ = [
    "PROG",
    "SIMULATED_BANNER",
    "add_command",
    "add_config_parser",
    "add_env_args",
    "add_evaluation_args",
    "add_overwrite_arg",
    "add_quiet_arg",
    "add_seeds_arg",
    "add_workers_args",
    "budgets",
    "config_arguments",
    "config_from_args",
    "env_kwarg_names",
    "episode_kwargs",
    "execute",
    "json_kwargs",
    "load_policy",
    "make_env",
    "new_parser",
    "open_env",
    "print_rich",
    "probability",
    "run_command",
    "seeds",
]

PROG = "precision-gym"

SIMULATED_BANNER = (
    "NOTE: the default tiers are the SIMULATED precision pair (precision_gym.backends."
    "simulated): figures below are simulated, not real-LLM results."
)

# ----------------------------------------------------------------------------- argument types


def _split(text: str, convert: Callable[[str], Any], message: str) -> list[Any]:
    """Comma-separated values of one type (``message``: argparse's error otherwise)."""
    try:
        return [convert(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None


def seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``: at least one integer."""
    values = _split(text, int, f"--seeds expects comma-separated integers like 0,1,2, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("--seeds needs at least one integer")
    return values


def budgets(text: str) -> list[float]:
    """``--budgets 0.2,0.4,0.7``: at least one high-precision budget K, each in [0, 1]."""
    message = f"--budgets expects comma-separated numbers in [0, 1] like 0.2,0.4,0.7, got {text!r}"
    values = _split(text, float, message)
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(message)
    return values


def json_kwargs(text: str) -> dict[str, Any]:
    """A JSON object (``--env-kwargs '{"cost_weight": 0.05}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {p}")
    return p


# ----------------------------------------------------------------------------- commands


def add_command(
    subparsers: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Register the subcommand ``name``, run as ``func(args) -> exit status``; returns its
    parser for the command's own flags. Every command module's ``add_parser(subparsers)``
    starts here. ``help`` (the line ``precision-gym --help`` shows) defaults to the first
    paragraph of ``func``'s docstring."""
    if help is None:
        help = " ".join((inspect.getdoc(func) or "").split("\n\n")[0].split())
    p = subparsers.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    return p


# ----------------------------------------------------------------------------- argument groups


def add_env_args(p: argparse.ArgumentParser) -> None:
    """``--env`` (default :data:`precision_gym.DEFAULT_ENV_ID`) and ``--env-kwargs``."""
    p.add_argument("--env", default=DEFAULT_ENV_ID, help="registered env id")
    p.add_argument(
        "--env-kwargs",
        type=json_kwargs,
        default=None,
        help="JSON object of env kwargs, e.g. '{\"cost_weight\": 0.05}'",
    )


def add_seeds_arg(p: argparse.ArgumentParser) -> None:
    """``--seeds`` (default 0,1,2)."""
    p.add_argument("--seeds", type=seeds, default=[0, 1, 2], help="comma-separated seeds")


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_evaluation_args(p: argparse.ArgumentParser) -> None:
    """The env, the test split, seeds and ``--quiet`` of the commands that evaluate routers."""
    add_env_args(p)
    p.add_argument(
        "--split",
        default=None,
        help="task split to evaluate on (default: the task's test split, "
        "valid_unseen for ALFWorld, test for WebShop)",
    )
    add_seeds_arg(p)
    add_quiet_arg(p)


def add_overwrite_arg(p: argparse.ArgumentParser, holds: str, *, resume: bool = False) -> None:
    """``--overwrite``: run into an ``--out`` folder that already ``holds`` trained artefacts,
    replacing them (without it, or ``--resume`` where the command has one, it is refused)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"rerun into an --out folder that already holds {holds} (replaces them); without "
        f"it{' or --resume' if resume else ''} such a folder is refused",
    )


def episode_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``env_id``, ``split``, ``episodes``, ``seeds`` and ``progress`` of
    :func:`training.evaluation.evaluate` from the flags of :func:`add_evaluation_args` (and
    the command's ``--episodes``)."""
    return dict(
        env_id=args.env,
        split=args.split,
        episodes=args.episodes,
        seeds=args.seeds,
        progress=not args.quiet,
    )


def add_workers_args(p: argparse.ArgumentParser) -> None:
    """``--workers`` / ``--ray-address`` of the commands whose episodes rollout workers play."""
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="rollout worker processes (each task's episodes on one worker; the "
        "records are identical whatever the count)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="run the rollout workers as Ray actors on this cluster ('auto', "
        "'ray://host:10001', or 'local' to start one here); needs the ray extra",
    )


# ----------------------------------------------------------------------------- dataclass configs


def _arg_type(type_str: str) -> dict[str, Any]:
    """``add_argument`` keywords for a dataclass field's (string) annotation."""
    base = type_str.replace(" | None", "")
    if base == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if base.startswith("tuple[float"):
        return {"type": lambda s: tuple(float(x) for x in s.split(",") if x.strip())}
    if base.startswith("list[str"):
        return {"nargs": "*"}
    if base.startswith("dict"):
        return {"type": json_kwargs}
    return {"type": {"int": int, "float": float, "str": str}[base]}


def config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One ``--flag`` per dataclass field, with the field's help string and default
    (``env_id`` also answers to ``--env``)."""
    for f in fields(config_cls):
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        kwargs = _arg_type(str(f.type))
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        flags = ["--" + f.name.replace("_", "-")] + (["--env"] if f.name == "env_id" else [])
        parser.add_argument(
            *flags,
            dest=f.name,
            default=default,
            help=f"{f.metadata.get('help', '')} (default: {shown})",
            **kwargs,
        )


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``config_cls`` from the flags :func:`config_arguments` added."""
    return config_cls(**{f.name: getattr(args, f.name) for f in fields(config_cls)})


def add_config_parser(
    subparsers: Any,
    name: str,
    config_cls: type,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str,
    doc: str | None,
) -> argparse.ArgumentParser:
    """A subcommand whose flags are the fields of ``config_cls`` (description: the first
    paragraph of ``doc``, the command module's docstring)."""
    p = add_command(
        subparsers, name, func, help=help, description=doc.split("\n\n")[0] if doc else None
    )
    config_arguments(p, config_cls)
    return p


# ----------------------------------------------------------------------------- env and policy


def env_kwarg_names(env_id: str) -> set[str] | None:
    """The keyword arguments ``gym.make(env_id, ...)`` takes (None: the env takes any)."""
    spec = gym.spec(env_id)
    creator = (
        load_env_creator(spec.entry_point)
        if isinstance(spec.entry_point, str)
        else spec.entry_point
    )
    params = inspect.signature(creator).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    return names | {"max_episode_steps", "disable_env_checker"}  # gym.make's own


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    """``gym.make(env_id, **env_kwargs)`` after checking the id and the kwargs' names."""
    if env_id not in ENV_IDS and env_id not in gym.registry:
        raise ConfigError(f"unknown env id {env_id!r}: expected one of {list(ENV_IDS)}")
    kwargs = dict(env_kwargs or {})
    allowed = env_kwarg_names(env_id)
    unknown = sorted(set(kwargs) - allowed) if allowed is not None else []
    if unknown:
        raise ConfigError(
            f"unknown env kwargs {unknown} for {env_id}: expected some of {sorted(allowed or ())}"
        )
    return gym.make(env_id, **kwargs)


def open_env(env_id: str, env_kwargs: dict[str, Any] | None = None, *, banner: Any = None) -> Any:
    """:func:`make_env`, then :data:`SIMULATED_BANNER` on ``banner`` (default stderr) when
    its tiers are simulated."""
    env = make_env(env_id, env_kwargs)
    if env.unwrapped.simulated:
        print(SIMULATED_BANNER, file=banner or sys.stderr)
    return env


def print_rich(obj: Any) -> None:
    """Print a rich renderable (a table) to stdout."""
    from rich.console import Console  # only the commands that print a table pay its import

    Console().print(obj)


# ----------------------------------------------------------------------------- parser and run


def new_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The top-level ``precision-gym`` parser and its (empty) subcommand group."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Step-level precision routing for LLM agents (Dynamic Mixed-Precision Routing).",
    )
    return parser, parser.add_subparsers(dest="command", required=True)


def execute(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; a library error is one line on stderr
    and exit status 2 (argparse's own errors exit 2 too)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (PrecisionGymError, FileNotFoundError, ValueError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


def run_command(add_parser: Callable[[Any], Any], argv: Sequence[str] | None = None) -> int:
    """Run the one subcommand ``add_parser`` registers (``python -m training.grpo ...`` is
    ``precision-gym train-grpo ...``) without building the other commands."""
    parser, sub = new_parser()
    add_parser(sub)
    (name,) = sub.choices
    return execute(parser, [name, *(sys.argv[1:] if argv is None else argv)])
