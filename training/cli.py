"""The ``precision-gym`` command line: demo, evaluate, and the training pipeline."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMAND_MODULES", "add_workers_args", "build_parser", "load_policy", "main"]

#: modules that add their own subcommand: each defines ``add_parser(subparsers)`` which
#: registers a parser with ``set_defaults(func=...)``; ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "training.kl_collect",
    "training.kl_st",
    "training.calibrate",
    "training.sweep",
    "training.grpo",
    "training.sb3_baselines",
    "training.quantize_cli",
)

SIMULATED_BANNER = (
    "NOTE: the default tiers are the SIMULATED precision pair (precision_gym.backends."
    "simulated): figures below are simulated, not real-LLM results."
)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds expects comma-separated integers like 0,1,2, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one integer")
    return seeds


def _json_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {p}")
    return p


def _budget_list(text: str) -> list[float]:
    from training.calibrate import _budgets

    return _budgets(text)


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    import gymnasium as gym

    import precision_gym
    from precision_gym.error import ConfigError

    if env_id not in precision_gym.ENV_IDS and env_id not in gym.registry:
        raise ConfigError(
            f"unknown env id {env_id!r}: expected one of {list(precision_gym.ENV_IDS)}"
        )
    kwargs = dict(env_kwargs or {})
    allowed = env_kwarg_names(env_id)
    unknown = sorted(set(kwargs) - allowed) if allowed is not None else []
    if unknown:
        raise ConfigError(
            f"unknown env kwargs {unknown} for {env_id}: expected some of {sorted(allowed or ())}"
        )
    return gym.make(env_id, **kwargs)


def env_kwarg_names(env_id: str) -> set[str] | None:
    """The keyword arguments ``gym.make(env_id, ...)`` takes (None: the env takes any)."""
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

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


def load_policy(
    router: str,
    env: Any,
    p_high: float | None = None,
    budget: float | None = None,
    seed: int = 0,
    online_step: float | None = None,
    trust_checkpoint: bool = False,
) -> Any:
    """A policy from a baseline name or a trained-router file (an SB3 ``.zip`` only with
    ``trust_checkpoint``: loading one unpickles it)."""
    from agents import BASELINE_NAMES, make_baseline

    if router in BASELINE_NAMES:
        if budget is not None or online_step is not None:
            raise ValueError(
                f"--budget/--online-step apply to a trained router file, not to {router!r}"
            )
        return make_baseline(router, env, p_high=p_high, seed=seed)
    path = Path(router)
    if not path.exists():
        raise FileNotFoundError(
            f"router {router!r} is neither a baseline name ({', '.join(BASELINE_NAMES)}) nor an "
            f"existing file (looked at {path.resolve()})"
        )
    from training.policies import load_policy_file

    if online_step is not None and budget is None:
        raise ValueError("--online-step needs --budget K (the budget the controller holds)")
    return load_policy_file(
        path, env, budget=budget, online_step=online_step, trust_checkpoint=trust_checkpoint
    )


def _print(obj: Any) -> None:
    from rich.console import Console

    Console().print(obj)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from precision_gym.io import check_output_path
    from training.evaluation import evaluate, format_table, write_json

    if args.out is not None:  # before the evaluation runs, not after
        check_output_path(args.out)
    env = make_env(args.env, args.env_kwargs)
    if args.split is None:
        args.split = env.unwrapped.task.split_for("test")
    unwrapped = env.unwrapped
    if unwrapped.simulated:
        print(SIMULATED_BANNER, file=sys.stderr)
    policy = load_policy(
        args.router,
        env,
        args.p_high,
        args.budget,
        seed=args.seeds[0],
        online_step=args.online_step,
        trust_checkpoint=args.trust_checkpoint,
    )
    common = dict(
        env_id=args.env,
        split=args.split,
        episodes=args.episodes,
        seeds=args.seeds,
        progress=not args.quiet,
    )

    def runner(router: str) -> Any:
        """Episodes played by --workers processes / Ray actors (None: here, in order)."""
        if args.workers == 1 and args.ray_address is None:
            return None
        from functools import partial

        from training.rollout_workers import RolloutSpec, run_distributed

        spec = RolloutSpec(
            env_id=args.env,
            split=args.split,
            router=router,
            env_kwargs=dict(args.env_kwargs or {}),
            p_high=args.p_high if router == args.router else None,
            budget=args.budget if router == args.router else None,
            policy_seed=args.seeds[0],
            online_step=args.online_step if router == args.router else None,
            trust_checkpoint=args.trust_checkpoint,
        )
        return partial(
            run_distributed,
            spec,
            workers=args.workers,
            ray_address=args.ray_address,
            progress=not args.quiet,
        )

    result = evaluate(policy, env, runner=runner(args.router), **common)
    reference = None
    if not args.no_reference:
        reference = (
            result
            if args.router == "always-high"
            else evaluate(
                load_policy("always-high", env), env, runner=runner("always-high"), **common
            )
        )
    summary = result.summary(reference)
    _print(
        format_table(
            [summary]
            + ([reference.summary(reference)] if reference and reference is not result else []),
            title=f"{args.env} / {args.split}",
        )
    )
    cache = getattr(unwrapped, "generation_cache", None)
    if cache is not None:  # this process's calls (workers keep their own counters)
        print(
            f"generation cache {cache.path}: hit rate {cache.hit_rate:.3f} "
            f"({cache.hits} hits, {cache.misses} misses)"
        )
        summary["generation_cache"] = cache.stats()
    if args.out is not None:
        write_json(summary, args.out)
        print(f"wrote {args.out}")
    env.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on a small budget: collect KL on a train sample, train KL-ST,
    calibrate on valid_train, sweep the budgets vs the baselines on a valid_unseen sample."""
    from precision_gym.io import refuse_overwrite
    from training.evaluation import format_table
    from training.kl_st import ROUTER_FILE
    from training.sweep import _budget_lines, run_pipeline

    out = Path(args.out)
    if not args.overwrite:  # before any work: a rerun never replaces a trained router
        refuse_overwrite(out, [f"klst/{ROUTER_FILE}", "results.json"], flags="--overwrite")
    out.mkdir(parents=True, exist_ok=True)
    task = make_env(args.env, args.env_kwargs).unwrapped
    simulated = task.simulated
    if args.split is None:
        args.split = task.task.split_for("test")
    if simulated:
        print(SIMULATED_BANNER)
    t0 = time.perf_counter()
    result = run_pipeline(
        out,
        env_id=args.env,
        env_kwargs=args.env_kwargs,
        kl_episodes=args.kl_episodes,
        calib_episodes=args.calib_episodes,
        calib_refine_iters=args.refine_iters,
        eval_episodes=args.episodes,
        eval_split=args.split,
        seeds=args.seeds,
        budgets=args.budgets,
        train_kwargs={"epochs": args.epochs},
        online_step=args.online_step or None,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    _print(format_table(result["summaries"], title=result["title"]))
    for line in _budget_lines(result["acceptance"]):
        print(line)
    print(result["threshold"].describe())
    print(result["calibration"].describe())
    times = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in result["times"].items())
    print(
        f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'pareto.png'} "
        f"(+ kl/, klst/router.pt, calibration/) in {time.perf_counter() - t0:.0f} s ({times})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="precision-gym",
        description="Step-level precision routing for LLM agents (Dynamic Mixed-Precision Routing).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def env_args(p: argparse.ArgumentParser, split: str = "valid_unseen") -> None:
        p.add_argument("--env", default="DMR-ALFWorld-v0", help="registered env id")
        p.add_argument(
            "--env-kwargs",
            type=_json_kwargs,
            default=None,
            help="JSON object of env kwargs, e.g. '{\"cost_weight\": 0.05}'",
        )
        p.add_argument(
            "--split",
            default=None,
            help="task split to evaluate on (default: the task's test split, "
            "valid_unseen for ALFWorld, test for WebShop)",
        )
        p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated seeds")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("evaluate", help="evaluate a router (Table-1 style) and write JSON")
    env_args(p)
    p.add_argument(
        "--router",
        required=True,
        help="always-high | always-low | random | oracle | path to a trained router",
    )
    p.add_argument(
        "--p-high",
        type=_probability,
        default=None,
        help="high-precision probability of the random router",
    )
    p.add_argument(
        "--budget",
        type=_probability,
        default=None,
        help="high-precision budget K: picks a trained router's calibrated threshold",
    )
    p.add_argument(
        "--online-step",
        type=float,
        default=None,
        help="hold K on the evaluated stream: adapt tau_K after every decision with this "
        "step in logit units (e.g. 0.2; agents.router.OnlineBudgetControl); default: fixed tau_K",
    )
    p.add_argument(
        "--episodes", type=int, default=20, help="tasks per seed (spread over the split)"
    )
    p.add_argument("--out", default=None, help="write the JSON summary here")
    from training.policies import TRUST_HELP

    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    add_workers_args(p)
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the always-high reference run (speedup_vs_high becomes NaN, null in the JSON)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="main job: collect KL, train KL-ST, calibrate, sweep budgets vs baselines (minutes)",
    )
    env_args(p)
    p.set_defaults(seeds=[0])
    p.add_argument("--episodes", type=int, default=6, help="evaluation tasks per seed")
    p.add_argument("--kl-episodes", type=int, default=30, help="train-split KL rollouts")
    p.add_argument("--calib-episodes", type=int, default=12, help="valid_train calibration pool")
    p.add_argument(
        "--refine-iters",
        type=int,
        default=2,
        help="calibration pool runs per K after Eq. 7 (fixed-point refinement; 0 = Eq. 7 only)",
    )
    p.add_argument("--epochs", type=int, default=10, help="KL-ST epochs (early stopping)")
    p.add_argument(
        "--budgets",
        type=_budget_list,
        default=[0.2, 0.4, 0.7],
        help="comma-separated high-precision budgets K",
    )
    p.add_argument(
        "--online-step",
        type=float,
        default=0.2,
        help="hold each K on the test stream with online budget control (the fixed tau_K is "
        "shown beside it); 0 = the fixed calibrated tau_K only (default: 0.2)",
    )
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rerun into an --out folder that already holds a trained router / results "
        "(replaces them); without it such a folder is refused",
    )
    p.set_defaults(func=cmd_demo)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    from precision_gym.error import PrecisionGymError

    try:
        return int(args.func(args) or 0)
    except (PrecisionGymError, FileNotFoundError, ValueError) as exc:
        print(f"precision-gym {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
