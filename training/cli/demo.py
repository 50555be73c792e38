"""``precision-gym demo``: the whole pipeline on a small budget (:func:`training.sweep.run_pipeline`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from precision_gym.io import refuse_overwrite
from training.calibrate import DEFAULT_BUDGETS
from training.cli.common import (
    add_command,
    add_evaluation_args,
    add_overwrite_arg,
    budgets,
    open_env,
    print_rich,
)
from training.evaluation import format_table
from training.kl_st import ROUTER_FILE
from training.sweep import DEFAULT_ONLINE_STEP, _budget_lines, run_pipeline

__all__ = ["add_parser", "cmd_demo"]


def cmd_demo(args: argparse.Namespace) -> int:
    """main job: collect KL, train KL-ST, calibrate, sweep budgets vs baselines (minutes)

    The whole pipeline on a small budget: collect KL on a train sample, train KL-ST,
    calibrate on valid_train, sweep the budgets vs the baselines on a valid_unseen sample."""
    out = Path(args.out)
    if not args.overwrite:  # before any work: a rerun never replaces a trained router
        refuse_overwrite(out, [f"klst/{ROUTER_FILE}", "results.json"], flags="--overwrite")
    out.mkdir(parents=True, exist_ok=True)
    task = open_env(args.env, args.env_kwargs, banner=sys.stdout).unwrapped.task
    if args.split is None:
        args.split = task.split_for("test")
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
    print_rich(format_table(result["summaries"], title=result["title"]))
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


def add_parser(subparsers: Any) -> None:
    p = add_command(subparsers, "demo", cmd_demo)
    add_evaluation_args(p)
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
        type=budgets,
        default=list(DEFAULT_BUDGETS),
        help="comma-separated high-precision budgets K",
    )
    p.add_argument(
        "--online-step",
        type=float,
        default=DEFAULT_ONLINE_STEP,
        help="hold each K on the test stream with online budget control (the fixed tau_K is "
        f"shown beside it); 0 = the fixed calibrated tau_K only (default: {DEFAULT_ONLINE_STEP})",
    )
    p.add_argument("--out", default="runs/demo", help="output folder")
    add_overwrite_arg(p, "a trained router / results")
