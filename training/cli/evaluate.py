"""``precision-gym evaluate``: a router's Table-1 figures on a split, as a table and JSON."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from precision_gym.io import check_output_path
from training.cli.common import (
    add_command,
    add_evaluation_args,
    add_workers_args,
    episode_kwargs,
    load_policy,
    open_env,
    print_rich,
    probability,
)
from training.evaluation import evaluate, format_table, write_json
from training.policies import TRUST_HELP
from training.rollout_workers import RolloutSpec, run_distributed

__all__ = ["add_parser", "cmd_evaluate"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """evaluate a router (Table-1 style) and write JSON"""
    if args.out is not None:  # before the evaluation runs, not after
        check_output_path(args.out)
    env = open_env(args.env, args.env_kwargs)
    if args.split is None:
        args.split = env.unwrapped.task.split_for("test")
    unwrapped = env.unwrapped
    policy = load_policy(
        args.router,
        env,
        args.p_high,
        args.budget,
        seed=args.seeds[0],
        online_step=args.online_step,
        trust_checkpoint=args.trust_checkpoint,
    )
    common = episode_kwargs(args)

    def runner(router: str) -> Any:
        """Episodes played by --workers processes / Ray actors (None: here, in order)."""
        if args.workers == 1 and args.ray_address is None:
            return None
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
    print_rich(
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


def add_parser(subparsers: Any) -> None:
    p = add_command(subparsers, "evaluate", cmd_evaluate)
    add_evaluation_args(p)
    p.add_argument(
        "--router",
        required=True,
        help="always-high | always-low | random | oracle | kind-oracle (simulated tiers) | path to a trained router",
    )
    p.add_argument(
        "--p-high",
        type=probability,
        default=None,
        help="high-precision probability of the random router",
    )
    p.add_argument(
        "--budget",
        type=probability,
        default=None,
        help="high-precision budget K: picks a trained router's calibrated threshold",
    )
    p.add_argument(
        "--online-step",
        type=float,
        default=None,
        help="hold K on the evaluated stream: adapt tau_K after every decision with this "
        "integral step in logit units (e.g. 0.5; the threshold follows the stream's 1 - K "
        "quantile of the router's scores: agents.router.OnlineBudgetControl); default: fixed "
        "tau_K",
    )
    p.add_argument(
        "--episodes", type=int, default=20, help="tasks per seed (spread over the split)"
    )
    p.add_argument("--out", default=None, help="write the JSON summary here")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    add_workers_args(p)
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the always-high reference run (speedup_vs_high becomes NaN, null in the JSON)",
    )
