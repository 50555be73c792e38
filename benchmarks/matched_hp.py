"""Routers against KL-ST's whole curve at matched high-precision (HP) fraction.

A router "beats KL-ST" only if it does so at the HP it spends. KL-ST's calibrated budgets K
give a few points of its curve, and these can sit far apart in HP (on the simulated ALFWorld
pair, valid_unseen: K = 0.4 realises HP 0.33 and K = 0.7 realises 0.89), so a comparison at
the same K, or interpolated between two distant K points, can credit a router for a point of
KL-ST's own curve that its calibration happened to miss. This script measures that curve
densely, by thresholds on KL-ST's ``p(high)``, on the very episodes the candidates play.
Read top to bottom:

1. load every candidate and the KL-ST router before any episode is played: a GRPO run folder
   (``--grpo-run [GROUP=]DIR``: the router its training ended with, greedy at its last
   sampling operating point, ``training.grpo.last_router``; the seed is the run's;
   ``--run-thresholds``: at those thresholds too, the run's own curve), or any router
   file (``--router GROUP=PATH[#K]@SEED``: an SB3 ``.zip`` needs ``--trust-checkpoint``);
   with SIMULATED tiers the kind oracle joins on each seed (``agents.KindOracleRouter``:
   every live step whose kind's critical share is at least ``--kind-shares`` high, derailed
   states low, paying the router's per-call time as the candidates do; it reads the
   simulator, so it is the attainable estimate, the headroom, not a router; share 0 is the
   high-HP end, 0.1 routes navigation low, 0.3 also the task types with few critical
   manipulations) and its rows print first (``--no-headroom``: not);
2. play KL-ST at each ``--thresholds`` value and at its calibrated thresholds tau_K (a
   router that ships KL-ST's K point then sits on a measured point) on every candidate
   seed's episodes, and each candidate on its own seed's episodes (``--split``,
   ``--episodes`` tasks; ``--jobs`` processes, one torch thread each; each (router, seed)
   unit is stored in ``--out``/units and reused by a rerun);
3. print KL-ST's curve (HP, success, utility ``success - lambda * T`` per threshold, seeds
   pooled), then per candidate its HP, success and utility, and candidate minus KL-ST at the
   candidate's HP: per task, KL-ST's utility interpolated between the two grid points whose
   HP brackets it (``training.stats.curve_at``), as a paired percentile-bootstrap 95% CI over
   tasks; then each group (GRPO, PPO, ...) pooled over its seeds (each task's mean over the
   seeds first), with a simultaneous 95% interval over all router groups (Bonferroni), since
   among many groups one lone CI that excludes 0 is expected by chance;
4. draw ``matched_hp.png`` (utility and success against HP: KL-ST's curve and the
   candidates) and write ``results.json``.

    python benchmarks/matched_hp.py --klst runs/klst/router.pt --grpo-run runs/grpo/s0 \\
        --grpo-run runs/grpo/s1 --router PPO=runs/ppo/model.zip@0 --trust-checkpoint \\
        --out runs/matched_hp
    python benchmarks/matched_hp.py --quick --out /tmp/mhp   # smoke test: WebShop, 3 tasks

Figures made with the SIMULATED tiers are simulated, and the output says so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared" / "alfworld").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared" / "alfworld")

#: a dense grid over p(high) of a KL-ST router (its scores are near 0 or 1, so HP moves
#: mostly between 0.1 and 0.3 on the simulated ALFWorld pair)
DEFAULT_THRESHOLDS = "0.002,0.03,0.08,0.12,0.15,0.18,0.2,0.22,0.25,0.28,0.4,0.7"
QUICK = ["--env-id", "DMR-WebShop-v0", "--split", "test", "--episodes", "3", "--n-boot", "200",
         "--thresholds", "0.3,0.5,0.7"]  # fmt: skip


@dataclass(frozen=True)
class Unit:
    """One router on one seed's episodes (plain data: it travels to a worker process)."""

    kind: str  # "klst" | "grpo-run" | "router"
    name: str  # "KL-ST tau=0.2", "GRPO s0", "PPO s1"
    group: str  # "KL-ST", "GRPO", "PPO", ...
    path: str
    seed: int
    threshold: float | None = None  # KL-ST's (or a GRPO run's) threshold on p(high)
    budget: float | None = None  # a router file's calibrated K
    min_share: float | None = None  # the kind oracle's share threshold (None: 0)

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{self.name}_s{self.seed}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="DMR-ALFWorld-v0", help="registered env id")
    p.add_argument("--env-kwargs", default="",
                   help='JSON object of env kwargs, e.g. \'{"task_kwargs": '
                   '{"force_high_on_search": false}}\' (WebShop with search steps routed)')  # fmt: skip
    p.add_argument("--klst", help="the KL-ST router.pt whose curve is measured")
    p.add_argument("--grpo-run", action="append", default=[],
                   help="[GROUP=]DIR (repeat): a train-grpo --out folder: its last router at its "
                   "last sampling operating point, on the run's seed, in GROUP (default GRPO: "
                   "name two runs' groups to compare them)")  # fmt: skip
    p.add_argument("--router", action="append", default=[],
                   help="GROUP=PATH[#K]@SEED (repeat; GROUP without '='): a router file, at "
                   "its calibrated K if given, on SEED's episodes")  # fmt: skip
    p.add_argument("--run-thresholds", default="",
                   help="comma-separated thresholds on p(high) at which each --grpo-run router "
                   "also plays (its own curve: one group per threshold, 'GROUP tau=T'), beside "
                   "its last operating point")  # fmt: skip
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow SB3 .zip candidates (unpickled: only files you made or trust)")  # fmt: skip
    p.add_argument("--thresholds", default=DEFAULT_THRESHOLDS,
                   help="comma-separated thresholds on KL-ST's p(high): its curve's points")  # fmt: skip
    p.add_argument("--no-calibrated-points", action="store_true",
                   help="leave KL-ST's calibrated thresholds tau_K out of its curve's grid "
                   "(by default they join --thresholds, so a router that ships KL-ST's own K "
                   "point sits on a measured point, not on a straight line between two)")  # fmt: skip
    p.add_argument("--thresholds-between", type=int, default=0,
                   help="also N thresholds in each gap between two adjacent calibrated tau_K, "
                   "even in logit (training.thresholds.thresholds_between; where the fixed "
                   "--thresholds grid misses a router's range: 3 on DMR-ALFWorld-v1; the "
                   "PPO-vs-GRPO benchmark's --curve-points)")  # fmt: skip
    p.add_argument("--no-headroom", action="store_true",
                   help="simulated tiers: leave out the kind oracle (every live step high, "
                   "derailed states low) that is otherwise played on each seed as the "
                   "attainable estimate")  # fmt: skip
    p.add_argument("--kind-shares", default="0",
                   help="comma-separated critical-share thresholds at which the kind oracle "
                   "(the headroom) plays: a live step goes high when its kind's share of "
                   "critical states under the low tier is at least this (0: every live step; "
                   "0.1 and 0.3: lower HP)")  # fmt: skip
    p.add_argument("--split", default="valid_unseen", help="split the episodes come from")
    p.add_argument("--episodes", type=int, default=0, help="tasks per seed (0 = all)")
    p.add_argument("--cost-weight", type=float, default=0.5, help="lambda per second (Eq. 8)")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    p.add_argument("--out", required=False, help="folder for units/, results.json and the PNG")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: WebShop, an untrained tiny router as KL-ST and candidate, "
                   "3 tasks")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args = p.parse_args([*QUICK, *argv])  # flags given override the quick ones
    if not args.out:
        raise SystemExit("--out is required: the folder for units/, results.json and the PNG")
    if not args.quick and not args.klst:
        raise SystemExit("--klst is required: the KL-ST router.pt whose curve is measured")
    if not args.quick and not (args.grpo_run or args.router):
        raise SystemExit("expected at least one candidate (--grpo-run DIR or --router ...)")
    try:
        args.env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs.strip() else {}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--env-kwargs expects a JSON object: {exc}") from None
    if not isinstance(args.env_kwargs, dict):
        raise SystemExit(f"--env-kwargs expects a JSON object, got {args.env_kwargs!r}")
    if args.cost_weight < 0:
        raise SystemExit(f"--cost-weight must be >= 0, got {args.cost_weight}")
    if args.thresholds_between < 0:
        raise SystemExit(f"--thresholds-between must be >= 0, got {args.thresholds_between}")
    if args.thresholds_between and args.no_calibrated_points:
        raise SystemExit("--thresholds-between fills the gaps between the calibrated "
                         "thresholds: it cannot go with --no-calibrated-points")  # fmt: skip
    if args.episodes < 0 or args.jobs < 1:
        raise SystemExit(f"expected --episodes >= 0 and --jobs >= 1, got {args.episodes}, "
                         f"{args.jobs}")  # fmt: skip
    args.thresholds = number_list("--thresholds", args.thresholds, open_ends=True)
    args.run_thresholds = number_list("--run-thresholds", args.run_thresholds, open_ends=True,
                                      allow_empty=True)  # fmt: skip
    args.kind_shares = number_list("--kind-shares", args.kind_shares, open_ends=False)
    return args


def number_list(flag: str, text: str, open_ends: bool, allow_empty: bool = False) -> list[float]:
    """``text`` ("0.1,0.2") as sorted distinct numbers in (0, 1) (``open_ends``) or [0, 1];
    SystemExit naming ``flag`` and what it expects otherwise."""
    span = "(0, 1)" if open_ends else "[0, 1]"
    try:
        values = sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError as exc:
        raise SystemExit(f"{flag} must be comma-separated numbers: {exc}") from None
    inside = (lambda v: 0.0 < v < 1.0) if open_ends else (lambda v: 0.0 <= v <= 1.0)
    if not (values or allow_empty) or not all(inside(v) for v in values):
        raise SystemExit(f"{flag} must be in {span}, got {values}")
    return values


def parse_router(spec: str) -> Unit:
    """``GROUP=PATH[#K]@SEED`` -> a candidate unit; SystemExit naming the expected form."""
    group, eq, rest = spec.partition("=")
    path, at, seed = rest.rpartition("@")
    path, _, budget = path.partition("#")
    try:
        if not (eq and at and group and path):
            raise ValueError
        k, s = (float(budget) if budget else None), int(seed)
    except ValueError:
        raise SystemExit(f"--router expects GROUP=PATH[#K]@SEED, got {spec!r}") from None
    return Unit("router", f"{group} s{s}", group, path, s, budget=k)


def quick_router(out: Path, env: Any) -> str:
    """--quick: a seeded, untrained tiny router (nothing trained: a smoke test's stand-in)."""
    import torch

    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    torch.manual_seed(0)
    u = env.unwrapped
    cfg = RouterConfig(embed_dim=u.embedding_dim, max_len=u.max_history, n_tiers=len(u.tier_names),
                       d_model=16, n_layers=1, n_heads=2)  # fmt: skip
    path = out / "quick_router.pt"
    meta = {"task": u.task.name, "tier_names": list(u.tier_names)}
    TransformerRouterPolicy(TransformerRouter(cfg), metadata=meta).save(path)
    return str(path)


def kind_unit(share: float, seed: int) -> Unit:
    """The kind oracle at ``share`` on ``seed``'s episodes (share 0 keeps the plain name, so
    units stored before ``--kind-shares`` are reused)."""
    group = "kind-oracle" if share == 0 else f"kind-oracle(share>={share:g})"
    return Unit("router", f"{group} s{seed}", group, "kind-oracle", seed,
                min_share=share or None)  # fmt: skip


def load_unit(unit: Unit, env: Any, trust: bool) -> Any:
    """The policy a unit plays (raises before any episode if a file is missing or foreign)."""
    from agents import make_baseline
    from agents.router import TransformerRouterPolicy
    from training.grpo import last_router
    from training.policies import check_policy_matches_env, load_policy

    if unit.kind == "klst":
        policy = TransformerRouterPolicy.load(unit.path)
        check_policy_matches_env(policy, env, unit.path)
        policy.threshold = float(unit.threshold)  # type: ignore[arg-type]
        return policy
    if unit.kind == "grpo-run":
        policy = last_router(unit.path)
        check_policy_matches_env(policy, env, unit.path)
        if unit.threshold is not None:  # a point of the run's own curve
            policy.threshold = float(unit.threshold)
        return policy
    if unit.path == "kind-oracle":
        return make_baseline("kind-oracle", env, min_share=unit.min_share or 0.0)
    return load_policy(unit.path, env, budget=unit.budget, trust_checkpoint=trust)


_ENV: dict[str, Any] = {}


def play(
    unit: Unit, env_id: str, env_kwargs: dict, split: str, tasks: list[int], trust: bool
) -> list[dict]:
    """Worker: ``unit``'s episode records (one torch thread; the env is built once per
    process)."""
    from precision_gym.threads import configure_torch_threads
    from training.cli.common import make_env
    from training.evaluation import evaluate

    configure_torch_threads(1)
    key = json.dumps([env_id, env_kwargs], sort_keys=True)
    if key not in _ENV:
        _ENV[key] = make_env(env_id, env_kwargs)
    env = _ENV[key]
    policy = load_unit(unit, env, trust)
    result = evaluate(policy, env, env_id=env_id, split=split, task_indices=tasks,
                      seeds=[unit.seed], router_name=unit.name, progress=False)  # fmt: skip
    return [asdict(r) for r in result.records]


def digest(unit: Unit) -> str | None:
    """SHA-256 of the file a unit's router comes from (a GRPO run: its ``checkpoint.pt``; a
    baseline name: None), so a stored unit is reused only for the same weights."""
    import hashlib

    path = Path(unit.path) / "checkpoint.pt" if unit.kind == "grpo-run" else Path(unit.path)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_units(
    args: argparse.Namespace,
    units: list[Unit],
    tasks: list[int],
    out: Path,
    baselines: dict[Unit, str] | None = None,
) -> dict:
    """Every unit's records: read from ``out/units`` when a rerun finds them (the same unit
    and episodes; for a baseline name, the same baseline: ``baselines`` maps its unit to the
    policy's name, e.g. whether the kind oracle pays router time), else played in ``--jobs``
    processes and stored atomically."""
    from tqdm.auto import tqdm

    from precision_gym.io import atomic_write_text

    records, todo = {}, []
    for u in units:
        path = out / "units" / f"{u.slug}.json"
        unit = {k: v for k, v in asdict(u).items() if v is not None}  # fields added later
        spec = {"unit": unit, "digest": digest(u), "env_id": args.env_id,
                "split": args.split, "tasks": tasks}  # fmt: skip
        if args.env_kwargs:  # (absent when empty: units stored before the flag are reused)
            spec["env_kwargs"] = args.env_kwargs
        if u in (baselines or {}):
            spec["baseline"] = baselines[u]  # type: ignore[index]
        if path.exists():
            stored = json.loads(path.read_text())
            old = stored["spec"].get("unit") or {}
            stored["spec"]["unit"] = {k: v for k, v in old.items() if v is not None}
            keys = dict.fromkeys([*spec, *stored["spec"]])  # a key on one side only differs
            differ = [k for k in keys if stored["spec"].get(k) != spec.get(k)]
            if differ:
                raise SystemExit(f"{path} was played with another {', '.join(differ)} than this "
                                 "run asks for (a changed router file changes its digest): "
                                 "use another --out")  # fmt: skip
            records[u] = stored["records"]
        else:
            todo.append((u, path, spec))
    from training.pools import process_pool

    with process_pool(args.jobs) as ex:  # workers end with this script, SIGTERM included
        futures = {ex.submit(play, u, args.env_id, args.env_kwargs, args.split, tasks,
                             args.trust_checkpoint): (u, path, spec)
                   for u, path, spec in todo}  # fmt: skip
        for fut in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                        desc="units", unit="unit"):  # fmt: skip
            u, path, spec = futures[fut]
            records[u] = fut.result()
            atomic_write_text(path, json.dumps({"spec": spec, "records": records[u]}))
    return records


def hp_of(recs: list[dict]) -> float:
    decisions = sum(r["decisions"] for r in recs)
    return sum(r["high_decisions"] for r in recs) / decisions if decisions else 0.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import numpy as np

    from training.cli.common import make_env
    from training.evaluation import episode_utility, select_tasks, utility_summary
    from training.grpo import last_router
    from training.stats import curve_at, paired_bootstrap_diff, per_task, simultaneous_level

    out = Path(args.out)
    (out / "units").mkdir(parents=True, exist_ok=True)
    from precision_gym.error import ConfigError

    try:
        env = make_env(args.env_id, args.env_kwargs)
    except (ConfigError, TypeError) as exc:
        raise SystemExit(f"--env-id/--env-kwargs: {exc}") from None
    unwrapped = env.unwrapped
    if args.split not in unwrapped.task.splits():
        raise SystemExit(f"--split must be one of {unwrapped.task.splits()} for {args.env_id}, "
                         f"got {args.split!r}")  # fmt: skip
    if args.quick:  # a --klst given is kept
        args.klst = args.klst or quick_router(out, env)
        args.router = args.router or [f"untrained={args.klst}@0"]
    cands = []
    for spec in args.grpo_run:  # the seed is the run's own
        group, eq, run = spec.partition("=")
        group, run = (group, run) if eq else ("GRPO", spec)
        if not (group and run):
            raise SystemExit(f"--grpo-run expects [GROUP=]DIR, got {spec!r}")
        seed = int(last_router(run).metadata["operating_point"]["seed"] or 0)
        cands.append(Unit("grpo-run", f"{group} s{seed}", group, run, seed))
        cands += [Unit("grpo-run", f"{group} tau={t:g} s{seed}", f"{group} tau={t:g}", run, seed,
                       threshold=t) for t in args.run_thresholds]  # fmt: skip
    cands += [parse_router(spec) for spec in args.router]
    if unwrapped.simulated and not args.no_headroom:  # the attainable estimate, first
        have = {(c.name, c.seed) for c in cands}
        head = [kind_unit(k, s) for k in args.kind_shares for s in sorted({c.seed for c in cands})]
        cands = [*[h for h in head if (h.name, h.seed) not in have], *cands]
    cands.sort(key=lambda c: c.path != "kind-oracle")  # stable: headroom rows print first
    names = [(c.name, c.seed) for c in cands]
    if len(set(names)) != len(names):
        raise SystemExit(f"expected one candidate per group and seed, got {sorted(names)}")
    seeds = sorted({c.seed for c in cands})
    calibrated = {}  # tau_K -> K: KL-ST's own operating points join the grid
    if not args.no_calibrated_points:
        from agents.router import TransformerRouterPolicy

        taus = TransformerRouterPolicy.load(args.klst).thresholds
        calibrated = {float(t): float(k) for k, t in taus.items() if 0.0 < float(t) < 1.0}
        from training.thresholds import thresholds_between

        between = thresholds_between(list(calibrated), args.thresholds_between)
        args.thresholds = sorted({*args.thresholds, *calibrated, *between})
    curve_units = {(t, s): Unit("klst", f"KL-ST tau={t:g}", "KL-ST", args.klst, s, threshold=t)
                   for t in args.thresholds for s in seeds}  # fmt: skip
    from agents import BASELINE_NAMES

    baselines = {}
    for u in [*cands, curve_units[args.thresholds[0], seeds[0]]]:
        policy = load_unit(u, env, args.trust_checkpoint)  # every router loads before any episode
        if u.path in BASELINE_NAMES:
            baselines[u] = str(policy.name)
    tasks = select_tasks(unwrapped.task.num_tasks(args.split), args.episodes or None)
    simulated = bool(unwrapped.simulated)
    lam = args.cost_weight
    if simulated:
        print("SIMULATED precision tiers: not real-LLM results.")
    print(f"{args.env_id} {args.split}: {len(tasks)} tasks x seeds {seeds}, lambda = {lam:g}/s; "
          f"KL-ST = {args.klst} at {len(args.thresholds)} thresholds\n")  # fmt: skip
    t0 = time.perf_counter()
    recs = run_units(args, [*cands, *curve_units.values()], tasks, out, baselines)

    def util(rs: list[dict]) -> np.ndarray:
        return per_task(rs, lambda r: episode_utility(r, lam))[1]

    print("KL-ST's curve (seeds pooled; HP pooled over decisions):\n")
    print("| threshold | HP | success | utility |\n|---:|---:|---:|---:|")
    curve_rows = []
    for t in args.thresholds:
        rs = [r for s in seeds for r in recs[curve_units[t, s]]]
        summ = utility_summary(rs, lam)
        curve_rows.append({"threshold": t, **summ})
        mark = f" (tau of K = {calibrated[t]:g})" if t in calibrated else ""
        print(f"| {t:g}{mark} | {summ['hp_fraction']:.3f} | {summ['success']:.3f} | "
              f"{summ['utility']:+.3f} |")  # fmt: skip

    print("\nCandidate - KL-ST at the candidate's HP (per task, interpolated on the seed's "
          "curve; 95% paired bootstrap over tasks):\n")  # fmt: skip
    print("| candidate | HP | success | utility | KL-ST at that HP | candidate - KL-ST |")
    print("|---|---:|---:|---:|---:|---|")
    rows, by_group = [], {}
    for c in cands:
        curve = [(hp_of(recs[curve_units[t, c.seed]]), util(recs[curve_units[t, c.seed]]))
                 for t in args.thresholds]  # fmt: skip
        hp = hp_of(recs[c])
        ref, inside = curve_at(curve, hp)
        mine = util(recs[c])
        diff = paired_bootstrap_diff(mine, ref, n_boot=args.n_boot)
        summ = utility_summary(recs[c], lam)
        rows.append({"candidate": c.name, "group": c.group, "seed": c.seed, **summ,
                     "klst_at_hp": float(np.mean(ref)), "on_curve": inside,
                     "diff": diff.as_dict()})  # fmt: skip
        by_group.setdefault(c.group, []).append((mine, ref))
        flag = "" if inside else " (outside KL-ST's curve: its nearest end)"
        print(f"| {c.name} | {hp:.3f} | {summ['success']:.3f} | {summ['utility']:+.3f} | "
              f"{np.mean(ref):+.3f} | {diff.value:+.3f} [{diff.lo:+.3f}, {diff.hi:+.3f}]{flag} |")  # fmt: skip
    pooled = {}
    # many groups, many chances: each router group's pooled difference also gets a
    # simultaneous 95% interval over the m router groups (Bonferroni: each at 1 - 0.05 / m);
    # the headroom (kind-oracle) rows estimate what is attainable and are not in the family
    headroom = {c.group for c in cands if c.path == "kind-oracle"}
    family = max(1, sum(g not in headroom for g in by_group))
    for group, pairs in by_group.items():
        mine = np.mean([m for m, _ in pairs], axis=0)
        ref = np.mean([r for _, r in pairs], axis=0)
        diff = paired_bootstrap_diff(mine, ref, n_boot=args.n_boot)
        pooled[group] = {"seeds": len(pairs), "utility": float(mine.mean()),
                         "klst_at_hp": float(ref.mean()), "diff": diff.as_dict()}  # fmt: skip
        sim = ""
        if group not in headroom:
            both = paired_bootstrap_diff(
                mine, ref, level=simultaneous_level(family), n_boot=args.n_boot
            )
            pooled[group]["diff_simultaneous"] = {**both.as_dict(), "family": family}
            sim = f"; simultaneous [{both.lo:+.3f}, {both.hi:+.3f}]"
        print(f"| **{group}, {len(pairs)} seed(s) pooled** | | | {mine.mean():+.3f} | "
              f"{ref.mean():+.3f} | **{diff.value:+.3f} [{diff.lo:+.3f}, {diff.hi:+.3f}]**{sim} |")  # fmt: skip
    print(f"\n'simultaneous': 95% over the {family} router group(s) together (Bonferroni, "
          f"each at {simultaneous_level(family):.4f}); a lone 95% CI that excludes 0 among {family} "
          "comparisons can be chance.")  # fmt: skip
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall:.0f} s (units already in {out / 'units'} are reused)")
    plot(out / "matched_hp.png", curve_rows, rows, simulated, args)
    from precision_gym.io import atomic_write_text

    data = {"simulated": simulated, "args": {k: v for k, v in vars(args).items()},
            "tasks": tasks, "seeds": seeds, "klst_curve": curve_rows, "candidates": rows,
            "pooled": pooled, "wall_s": wall}  # fmt: skip
    atomic_write_text(out / "results.json", json.dumps(data, indent=1, default=str))
    print(f"wrote {out / 'results.json'} and {out / 'matched_hp.png'}")
    return 0


def plot(path: Path, curve: list[dict], cands: list[dict], simulated: bool, args: Any) -> None:
    """Utility and success against HP: KL-ST's curve (seeds pooled) and every candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("utility", "success"), strict=True):
        ax.plot([r["hp_fraction"] for r in curve], [r[key] for r in curve], "o-", color="gray",
                label="KL-ST (thresholds)")  # fmt: skip
        for group in dict.fromkeys(c["group"] for c in cands):
            pts = [c for c in cands if c["group"] == group]
            ax.plot([c["hp_fraction"] for c in pts], [c[key] for c in pts], "*", ms=12,
                    label=f"{group} (one point per seed)")  # fmt: skip
        ax.set_xlabel("high-precision fraction")
        ax.set_ylabel(key if key == "success" else f"utility (lambda = {args.cost_weight:g}/s)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{args.env_id} {args.split}: candidates against KL-ST's curve"
                 + (" (SIMULATED tiers)" if simulated else ""))  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
