"""Derailed-state headroom (SIMULATED tiers): what routing derailed states low is worth.

The simulated pair (``precision_gym.backends.simulated``) derails an episode once a wrong
action is taken on a critical state; from then on every tier errs alike, so high precision
there only adds time. A router trained on the KL between the tiers (KL-ST) sees a KL above
zero on derailed states, so at high budgets it spends high precision on them. How much is
moving them to the bottom of its ranking worth? Read top to bottom:

1. load the router once per budget K (its calibrated threshold), and wrap a second copy in
   ``agents.LowWhenDerailed``: the same choices, except the lowest tier wherever the episode
   has derailed or nothing is left to do. The wrapper reads the simulator's state: it is a
   diagnostic, not a router to deploy;
2. play both on the same episodes (``--split`` x ``--seeds``);
3. print, per K, success, HP fraction and utility ``success - lambda * T`` of each, and the
   wrapper's utility gain as a paired percentile-bootstrap CI over tasks.

The gain is part of the headroom an RL stage could take at matched budget: a derailed agent's
loops and "Nothing happens." observations show in the router's input.

    python benchmarks/derailed_headroom.py --router runs/klst/router.pt --split train_heldout
    python benchmarks/derailed_headroom.py --quick    # smoke test: WebShop, always-high, 3 tasks
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared" / "alfworld").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared" / "alfworld")

QUICK = ["--env-id", "DMR-WebShop-v0", "--router", "always-high", "--budgets", "",
         "--split", "test", "--episodes", "3", "--n-boot", "200"]  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="DMR-ALFWorld-v0", help="registered env id")
    p.add_argument("--router", help="a router file (a KL-ST router.pt) or a baseline name")
    p.add_argument("--budgets", default="0.4,0.7,0.9",
                   help="comma-separated K of the router's calibrated thresholds ('' = the "
                   "router's own operating point, as for a baseline)")  # fmt: skip
    p.add_argument("--split", default="train_heldout", help="split the episodes come from")
    p.add_argument("--episodes", type=int, default=0, help="tasks per seed (0 = all)")
    p.add_argument("--seeds", default="0", help="comma-separated episode seeds")
    p.add_argument("--cost-weight", type=float, default=0.5, help="lambda per second (Eq. 8)")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    p.add_argument("--out", help="also write the figures and episode records to this JSON")
    p.add_argument("--quick", action="store_true", help="a tiny WebShop run (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args = p.parse_args([*QUICK, *argv])  # flags given override the quick ones
    if not args.router:
        raise SystemExit("--router is required: a router file (runs/klst/router.pt) or a name")
    if args.cost_weight < 0:
        raise SystemExit(f"--cost-weight must be >= 0, got {args.cost_weight}")
    if args.episodes < 0:
        raise SystemExit(f"--episodes must be >= 0 (0 = all), got {args.episodes}")
    try:
        args.budgets = [float(k) for k in args.budgets.split(",") if k.strip()] or [None]
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as exc:
        raise SystemExit(f"--budgets / --seeds must be comma-separated numbers: {exc}") from None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from agents import LowWhenDerailed
    from precision_gym.threads import configure_torch_threads
    from training.cli.common import make_env
    from training.evaluation import episode_utility as utility
    from training.evaluation import evaluate, select_tasks, utility_summary
    from training.policies import load_policy
    from training.stats import paired_bootstrap_diff, per_task

    configure_torch_threads(args.threads)
    env = make_env(args.env_id, {})
    unwrapped = env.unwrapped
    if not unwrapped.simulated:
        raise SystemExit(f"{args.env_id} has real tiers: the derailed flag needs SIMULATED ones")
    if args.split not in unwrapped.task.splits():
        raise SystemExit(
            f"--split must be one of {unwrapped.task.splits()} for {args.env_id}, "
            f"got {args.split!r}"
        )
    for k in args.budgets:  # every router loads before any episode is played
        load_policy(args.router, env, budget=k)
    tasks = select_tasks(unwrapped.task.num_tasks(args.split), args.episodes or None)
    print("SIMULATED precision tiers: not real-LLM results.")
    print(
        f"{args.router} on {args.env_id} {args.split}: {len(tasks)} tasks x seeds {args.seeds}, "
        f"lambda = {args.cost_weight:g}/s; gain = wrapper - router, paired 95% bootstrap CI "
        "over tasks (each task's mean over its seeds)\n"
    )
    print("| K | success router / wrapper | HP router / wrapper | utility router / wrapper | "
          "gain | episodes that differ |")  # fmt: skip
    print("|---:|---|---|---|---|---:|")
    t0, rows = time.perf_counter(), []
    for k in args.budgets:
        recs = {}
        for name in ("router", "wrapper"):
            policy = load_policy(args.router, env, budget=k)
            if name == "wrapper":
                policy = LowWhenDerailed(policy, env)
            recs[name] = evaluate(
                policy, env, env_id=args.env_id, split=args.split, task_indices=tasks,
                seeds=args.seeds, progress=True,
            ).records  # fmt: skip
        ua = per_task(recs["wrapper"], lambda r: utility(r, args.cost_weight))[1]
        ub = per_task(recs["router"], lambda r: utility(r, args.cost_weight))[1]
        gain = paired_bootstrap_diff(ua, ub, n_boot=args.n_boot)
        a, b = (utility_summary(recs[n], args.cost_weight) for n in ("router", "wrapper"))
        differ = sum(
            abs(utility(x, args.cost_weight) - utility(y, args.cost_weight)) > 1e-12
            for x, y in zip(recs["router"], recs["wrapper"], strict=True)
        )
        print(
            f"| {'-' if k is None else f'{k:g}'} | {a['success']:.3f} / {b['success']:.3f} | "
            f"{a['hp_fraction']:.2f} / {b['hp_fraction']:.2f} | {a['utility']:+.3f} / "
            f"{b['utility']:+.3f} | {gain.value:+.3f} [{gain.lo:+.3f}, {gain.hi:+.3f}] | "
            f"{differ} of {len(recs['router'])} |"
        )
        rows.append({"budget": k, "router": a, "wrapper": b, "gain": gain.as_dict(),
                     "differ": differ,
                     "records": {n: [vars(r) for r in v] for n, v in recs.items()}})  # fmt: skip
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    if args.out:
        from precision_gym.io import atomic_write_text

        data = {"simulated": True, "args": {**vars(args)}, "rows": rows}
        atomic_write_text(Path(args.out), json.dumps(data, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
