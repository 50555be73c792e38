"""Two routers compared on the same episodes: paired differences with bootstrap CIs.

Reads ``precision-gym evaluate --out`` summaries, or one router of a benchmark unit file
(``PATH#NAME``, e.g. ``runs/pvg/fixed_s0.json#KL-ST K=0.4``: a ``{"results": {name: summary}}``
file of ``benchmarks/ppo_vs_grpo.py``). Several files per side are pooled (one per seed, say);
the two sides must hold the same (task, seed) episodes. Read top to bottom:

1. load each side's episode records and check that they pair up;
2. per seed, and pooled over seeds (each task's mean over its seeds first, as the
   benchmarks do): success, HP fraction (pooled over decisions) and utility
   ``success - lambda * T`` of each side, and A - B utility as a paired percentile-bootstrap CI
   over tasks (``training.stats.paired_bootstrap_diff``);
3. print one row per seed and the pooled row.

    python benchmarks/paired_compare.py --a kept_s0.json kept_s1.json \\
        --b 'runs/x/fixed_s0.json#KL-ST K=0.4' 'runs/x/fixed_s1.json#KL-ST K=0.4' --cost-weight 0.5

Figures made from the SIMULATED tiers stay simulated: the script says so when the records do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def load_side(specs: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """Episode records of one side (every file pooled) and whether any file is simulated."""
    records, simulated = [], False
    for spec in specs:
        path, _, name = spec.partition("#")
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"cannot read {path}: {exc}") from None
        if name:
            results = data.get("results", {})
            if name not in results:
                raise SystemExit(
                    f"{path} has no router {name!r}: expected one of {sorted(results)}"
                )
            data = results[name]
        elif "records" not in data:
            raise SystemExit(
                f"{path} holds no episode records: expected an `evaluate --out` summary, or "
                f"PATH#NAME for one router of a benchmark unit (routers: "
                f"{sorted(data.get('results', {}))})"
            )
        records += data["records"]
        simulated |= bool(data.get("simulated", False))
    return records, simulated


def by_episode(records: list[dict[str, Any]], side: str) -> dict[tuple[int, int], dict]:
    out: dict[tuple[int, int], dict] = {}
    for r in records:
        key = (int(r["seed"]), int(r["task_index"]))
        if key in out:
            raise SystemExit(f"side {side} has episode (seed, task) = {key} twice")
        out[key] = r
    return out


def row(label: str, a: dict, b: dict, lam: float, level: float, n_boot: int) -> str:
    """One table row: both sides' summaries and A - B over tasks (each task's seed mean)."""
    from training.evaluation import episode_utility, utility_summary
    from training.stats import paired_bootstrap_diff, per_task

    tasks, ua_task = per_task(a.values(), lambda r: episode_utility(r, lam))
    _, ub_task = per_task(b.values(), lambda r: episode_utility(r, lam))  # same tasks: in main
    diff = paired_bootstrap_diff(ua_task, ub_task, level=level, n_boot=n_boot)
    sa, ha, ua = utility_summary(list(a.values()), lam).values()
    sb, hb, ub = utility_summary(list(b.values()), lam).values()
    return (
        f"| {label} | {len(tasks)} | {sa:.3f} / {sb:.3f} | {ha:.2f} / {hb:.2f} | "
        f"{ua:+.3f} / {ub:+.3f} | {diff.value:+.3f} [{diff.lo:+.3f}, {diff.hi:+.3f}] |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", nargs="+", required=True, help="side A: files or PATH#NAME")
    p.add_argument("--b", nargs="+", required=True, help="side B: files or PATH#NAME")
    p.add_argument("--cost-weight", type=float, required=True, help="lambda per second (Eq. 8)")
    p.add_argument("--level", type=float, default=0.95, help="two-sided CI level")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples")
    args = p.parse_args(argv)
    if not 0.0 < args.level < 1.0:
        raise SystemExit(f"--level must be in (0, 1), got {args.level}")
    if args.cost_weight < 0:
        raise SystemExit(f"--cost-weight must be >= 0, got {args.cost_weight}")
    (ra, sim_a), (rb, sim_b) = load_side(args.a), load_side(args.b)
    a, b = by_episode(ra, "A"), by_episode(rb, "B")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise SystemExit(
            "the sides must hold the same (seed, task) episodes: "
            f"{len(only_a)} only in A (first {only_a[:3]}), {len(only_b)} only in B "
            f"(first {only_b[:3]})"
        )
    if sim_a or sim_b:
        print("SIMULATED precision tiers: not real-LLM results.")
    print(
        f"A - B at lambda = {args.cost_weight:g}/s, {args.level:.0%} paired bootstrap CI over "
        "tasks (each task's mean over its seeds)\n"
    )
    print("| episodes | tasks | success A / B | HP A / B | utility A / B | A - B utility |")
    print("|---|---:|---|---|---|---|")
    seeds = sorted({s for s, _ in a})
    for seed in seeds:
        pick = (
            {k: v for k, v in a.items() if k[0] == seed},
            {k: v for k, v in b.items() if k[0] == seed},
        )
        print(row(f"seed {seed}", *pick, args.cost_weight, args.level, args.n_boot))
    if len(seeds) > 1:
        print(row("pooled", a, b, args.cost_weight, args.level, args.n_boot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
