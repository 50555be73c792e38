"""Budget sweep of a calibrated router against the baselines, and the end-to-end pipeline.

For each budget K: the router holding K with online budget control (the stream quantile
of its own scores plus an integral term of step :data:`DEFAULT_ONLINE_STEP`, starting at
the calibrated ``tau_K``; ``agents.router.OnlineBudgetControl``), a random router whose
``p_high`` is that router's *realized* high-precision fraction (same rate, no state
information), and beside them the router at the fixed calibrated ``tau_K`` (the paper's
protocol; its realised rate drifts from K when the test split's scores shift); plus
always-high, always-low and the SIMULATED oracle, on the same episodes. Writes the table
(JSON + Markdown), the Pareto plot with the router points, and an acceptance check whose
lines show the realised HP fraction beside every K. ``online_step=None`` (``--online-step
0``) evaluates the fixed thresholds only.

``precision-gym sweep --router runs/klst/router.pt --episodes 20 --seeds 0,1,2``.
:func:`run_pipeline` (``precision-gym demo``) chains collect-kl, train-klst, calibrate and
this sweep.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agents import make_baseline
from precision_gym import DEFAULT_ENV_ID
from precision_gym.io import atomic_write_text, refuse_overwrite
from training.calibrate import DEFAULT_BUDGETS, calibrate_router
from training.cli.common import (
    add_command,
    add_env_args,
    add_quiet_arg,
    add_seeds_arg,
    add_workers_args,
    budgets,
    episode_kwargs,
    make_env,
    open_env,
    print_rich,
)
from training.evaluation import (
    EpisodeRecord,
    EvalResult,
    evaluate,
    format_table,
    markdown_table,
    pareto_plot,
    write_json,
)
from training.kl_collect import CollectConfig, collect_kl
from training.kl_st import ROUTER_FILE, TrainConfig, train_klst
from training.policies import load_policy
from training.rollout_workers import RolloutSpec, run_distributed

#: step (logit units) of the online budget control that sweeps and the demo hold K with
DEFAULT_ONLINE_STEP = 0.5

__all__ = [
    "DEFAULT_ONLINE_STEP",
    "acceptance",
    "add_parser",
    "merge_sweeps",
    "run_pipeline",
    "run_sweep",
    "write_sweep",
]


def run_sweep(
    router_path: str | Path,
    env: Any,
    *,
    env_id: str = "",
    split: str = "valid_unseen",
    episodes: int | None = 20,
    seeds: Sequence[int] = (0, 1, 2),
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    oracle: bool = True,
    progress: bool = True,
    partial: str | Path | None = None,
    online_step: float | None = DEFAULT_ONLINE_STEP,
    env_kwargs: dict[str, Any] | None = None,
    workers: int = 1,
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Summaries (``EvalResult.summary`` JSON, speedup vs always-high) of every router:
    always-high, always-low, then per budget (K = 0.4 first) the router (holding K online
    when ``online_step``), the random router at its realized rate and, with online control,
    the router at the fixed ``tau_K`` beside it; then the oracle. ``partial``: a JSON file
    rewritten after every router, so an interrupted sweep keeps what it measured.

    ``workers`` / ``ray_address``: every router point except the online ones is played by
    rollout workers (``training.rollout_workers``; the env is rebuilt there from ``env_id``
    and ``env_kwargs``), with the same records as here; online points adapt their threshold
    across episodes in order, so they always run here, as one stream."""
    parallel = workers != 1 or ray_address is not None
    if parallel and not env_id:
        raise ValueError("sweep with --workers/--ray-address needs env_id (workers rebuild it)")

    def runner(router: str, **spec: Any) -> Any:
        """Rollout workers for one router point (None: play it here, in order)."""
        if not parallel or spec.get("online_step") is not None:
            return None
        rs = RolloutSpec(
            env_id=env_id, split=split, router=str(router), env_kwargs=dict(env_kwargs or {}),
            **spec,
        )  # fmt: skip
        return functools.partial(
            run_distributed, rs, workers=workers, ray_address=ray_address, progress=progress
        )

    common = dict(env_id=env_id, split=split, episodes=episodes, seeds=seeds, progress=progress)
    results: list[Any] = []
    done: list[EvalResult] = []
    if partial is not None and Path(partial).exists():  # resume an interrupted sweep
        for d in json.loads(Path(partial).read_text()).get("results", []):
            recs = [EpisodeRecord(**r) for r in d.pop("records")]
            done.append(EvalResult(**d, records=recs))

    def run(policy: Any, name: str | None = None, remote: Any = None) -> Any:
        i = len(results)
        prev = done[i] if i < len(done) else None
        if prev is not None and prev.router == (name or policy.name) and prev.seeds == list(seeds):
            res = prev  # measured before the interruption: same router, same episodes
        else:
            res = evaluate(policy, env, router_name=name, runner=remote, **common)
        results.append(res)
        if partial is not None:  # survive an interruption: every result so far
            write_json({"summaries": _summaries(results), "results": results}, partial)
        return res

    for name in ("always-high", "always-low"):
        run(make_baseline(name, env), remote=runner(name))
    # the key budget first, so an interrupted sweep still has it
    for k in sorted(budgets, key=lambda b: (abs(b - 0.4), b)):
        res = run(
            load_policy(router_path, env, budget=k, online_step=online_step),
            remote=runner(router_path, budget=k, online_step=online_step),
        )
        rate = res.summary()["hp_fraction"]
        rnd = make_baseline("random", env, p_high=rate, seed=seeds[0])
        spec = {"p_high": rate, "policy_seed": seeds[0]}
        run(rnd, f"random(p_high={rate:.2f}, K={k:g})", remote=runner("random", **spec))
        if online_step is not None:  # the fixed-threshold figure beside the held one
            run(load_policy(router_path, env, budget=k), remote=runner(router_path, budget=k))
    if oracle and env.unwrapped.simulated:
        run(make_baseline("oracle", env), remote=runner("oracle"))
    return _summaries(results)


def _summaries(results: Sequence[Any]) -> list[dict[str, Any]]:
    high = results[0]
    out = []
    for r in results:
        s = r.summary(high)
        m = re.search(r"-router\(K=([0-9.eE+-]+)(,online)?\)$", s["router"])
        if m:
            s["budget"] = float(m.group(1))
            s["budget_control"] = "online" if m.group(2) else "fixed"
        out.append(s)
    return out


def merge_sweeps(parts: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge sweeps run on disjoint seeds (e.g. one process per seed) into one: per-seed
    rows are pooled and each mean/std recomputed over all seeds. Routers are matched by
    position (random routers carry their own seed's realized rate)."""
    import numpy as np

    if not parts:
        raise ValueError("merge_sweeps needs at least one sweep, got none")
    n = min(len(p) for p in parts)  # interrupted (partial) sweeps: the routers all have
    merged = []
    for i in range(n):
        group = [p[i] for p in parts]
        rows = [r for s in group for r in s["per_seed"]]
        m = dict(group[0])
        for key in ("success_rate", "mean_success_episode_time_s", "hp_fraction", "mean_return"):
            vals = np.array([r[key] for r in rows], dtype=float)
            vals = vals[~np.isnan(vals)]
            m[key] = float(vals.mean()) if len(vals) else math.nan
            m[f"{key}_std"] = float(vals.std()) if len(vals) else math.nan
        sp = np.array([s["speedup_vs_high"] for s in group], dtype=float)
        sp = sp[~np.isnan(sp)]
        m["speedup_vs_high"] = float(sp.mean()) if len(sp) else math.nan
        m["speedup_vs_high_std"] = float(sp.std()) if len(sp) else math.nan
        m["seeds"] = [x for s in group for x in s["seeds"]]
        m["per_seed"] = rows
        m["records"] = [r for s in group for r in s.get("records", [])]
        m["backend_errors"] = sum(s.get("backend_errors", 0) for s in group)
        if m["router"].startswith("random(") and len(group) > 1:
            k = m["router"].split("K=")[-1].rstrip(")")
            m["router"] = f"random(p_high=router's per-seed rate, K={k})"
        merged.append(m)
    return merged


def acceptance(summaries: Sequence[dict[str, Any]], key_budget: float = 0.4) -> dict[str, Any]:
    """The issue-4 acceptance checks on a sweep: at ``key_budget`` the router beats random at
    the same realized rate by >= 10 pp and recovers >= 70% of the low->high success gap;
    the realized hp fraction is within 0.05 of every K."""
    by = {s["router"]: s for s in summaries}
    hi, lo = by["always-high"]["success_rate"], by["always-low"]["success_rate"]
    out: dict[str, Any] = {"budgets": {}}
    points = [s for s in summaries if "budget" in s]
    held = {s["budget"] for s in points if s.get("budget_control") == "online"}
    for s in points:
        k = s["budget"]
        fixed = next(
            (p for p in points if p["budget"] == k and p.get("budget_control") != "online"), None
        )
        if k in held and s is fixed:
            continue  # reported beside the online point of the same K
        rnd = next(
            r
            for r in summaries
            if r["router"].startswith("random(") and r["router"].endswith(f"K={k:g})")
        )
        gap = hi - lo
        out["budgets"][f"{k:g}"] = {
            "success": s["success_rate"],
            "hp_fraction": s["hp_fraction"],
            "random_success": rnd["success_rate"],
            "margin_vs_random_pp": 100 * (s["success_rate"] - rnd["success_rate"]),
            "gap_recovered": (s["success_rate"] - lo) / gap if gap > 0 else math.nan,
            "hp_within_0.05": abs(s["hp_fraction"] - k) <= 0.05,
            "control": s.get("budget_control", "fixed"),
            "fixed_hp_fraction": fixed["hp_fraction"] if fixed is not None else math.nan,
            "fixed_success": fixed["success_rate"] if fixed is not None else math.nan,
        }
    key = out["budgets"].get(f"{key_budget:g}")
    if key is not None:
        out["pass_margin_vs_random"] = key["margin_vs_random_pp"] >= 10.0
        out["pass_gap_recovered"] = key["gap_recovered"] >= 0.70
    out["pass_hp_fraction"] = all(b["hp_within_0.05"] for b in out["budgets"].values())
    return out


def write_sweep(
    summaries: Sequence[dict[str, Any]], out: str | Path, title: str, extra: dict | None = None
) -> dict[str, Any]:
    """results.json, results.md and pareto.png (router points included) under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    simulated = any(s.get("simulated") for s in summaries)
    acc = acceptance(summaries) if any("budget" in s for s in summaries) else {}
    write_json(
        {"summaries": list(summaries), "acceptance": acc, **(extra or {})}, out / "results.json"
    )
    lines = [f"# {title}", ""]
    if simulated:
        lines += ["SIMULATED precision pair: not real-LLM results.", ""]
    lines += [markdown_table(summaries), ""]
    if acc:
        lines += ["## Budgets and acceptance (K = 0.4)", ""]
        lines += [f"- {line}" for line in _budget_lines(acc)]
        lines.append("")
    atomic_write_text(out / "results.md", "\n".join(lines))
    pareto_plot(summaries, out / "pareto.png", title=title)
    return acc


@contextmanager
def _stage(times: dict[str, float], name: str) -> Iterator[None]:
    """Time the ``with`` block into ``times[name]`` (seconds)."""
    t = time.perf_counter()
    yield
    times[name] = time.perf_counter() - t


def run_pipeline(
    out: str | Path,
    *,
    env_id: str = DEFAULT_ENV_ID,
    env_kwargs: dict[str, Any] | None = None,
    kl_episodes: int = 30,
    calib_episodes: int = 12,
    calib_refine_iters: int = 2,
    eval_episodes: int = 6,
    eval_split: str | None = None,
    seeds: Sequence[int] = (0,),
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    train_kwargs: dict[str, Any] | None = None,
    online_step: float | None = DEFAULT_ONLINE_STEP,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """collect-kl (train split) -> train-klst -> calibrate (valid_train) -> sweep
    (``eval_split``); every stage writes under ``out`` and is timed. A folder that already
    holds a trained router or results is refused before any work unless ``overwrite``
    (the KL collection in ``out/kl`` is resumed either way)."""
    out = Path(out)
    if not overwrite:
        refuse_overwrite(out, [f"klst/{ROUTER_FILE}", "results.json"], flags="--overwrite")
    times: dict[str, float] = {}
    env = make_env(env_id, env_kwargs)
    if eval_split is None:
        eval_split = env.unwrapped.task.split_for("test")
    t0 = time.perf_counter()
    with _stage(times, "collect_kl_s"):
        collect_kl(
            out / "kl",
            CollectConfig(
                env_id=env_id,
                split=env.unwrapped.task.split_for("train"),
                episodes=kl_episodes,
                shard_size=10,
                env_kwargs=dict(env_kwargs or {}),
            ),
            env=env,
            progress=progress,
        )
    tk = {"epochs": 10, "patience": 4, "d_model": 64, **(train_kwargs or {})}
    with _stage(times, "train_klst_s"):
        result = train_klst(
            TrainConfig(data=str(out / "kl"), out=str(out / "klst"), **tk),
            progress=progress,
            overwrite=True,  # checked above, before any work
        )
    # the trained router on the env, at every budget: calibrated, then swept
    per_budget = {"budgets": budgets, "progress": progress}
    with _stage(times, "calibrate_s"):
        report = calibrate_router(
            result.router_path,
            env,
            episodes=calib_episodes,
            out_dir=out / "calibration",
            refine_iters=calib_refine_iters,
            **per_budget,
        )
    with _stage(times, "evaluate_s"):
        summaries = run_sweep(
            result.router_path,
            env,
            env_id=env_id,
            split=eval_split,
            episodes=eval_episodes,
            seeds=seeds,
            online_step=online_step,
            **per_budget,
        )
    times["total_s"] = time.perf_counter() - t0
    n = len(summaries[0]["task_indices"])
    title = f"{env_id} / {eval_split} ({n} tasks x {len(seeds)} seeds)"
    acc = write_sweep(
        summaries,
        out,
        title,
        extra={
            "wall_time_s": times["total_s"],
            "stage_times_s": times,
            "tau_kl": result.threshold.tau,
            "calibration": report.thresholds,
        },
    )
    env.close()
    return {
        "summaries": summaries,
        "acceptance": acc,
        "times": times,
        "title": title,
        "threshold": result.threshold,
        "calibration": report,
    }


def cmd_sweep(args: argparse.Namespace) -> int:
    """K-sweep of a calibrated router vs baselines (+ Pareto plot)"""
    if args.merge:
        parts = []
        for d in args.merge:  # finished sweeps, else the partial file of an interrupted one
            f = Path(d) / "results.json"
            f = f if f.exists() else Path(d) / "partial.json"
            parts.append(json.loads(f.read_text())["summaries"])
        summaries = merge_sweeps(parts)
        n = len(summaries[0]["task_indices"])
        first = summaries[0]
        title = f"{first['env']} / {first['split']} ({n} tasks x {len(first['seeds'])} seeds)"
        print_rich(format_table(summaries, title=title))
        _report(write_sweep(summaries, args.out, title), args.out)
        return 0
    if not args.router:
        raise ValueError("sweep needs --router CKPT (or --merge DIR ...)")
    env = open_env(args.env, args.env_kwargs)
    if args.split is None:
        args.split = env.unwrapped.task.split_for("test")
    summaries = run_sweep(
        args.router,
        env,
        **episode_kwargs(args),
        budgets=args.budgets,
        oracle=not args.no_oracle,
        partial=Path(args.out) / "partial.json",
        online_step=args.online_step or None,
        env_kwargs=args.env_kwargs,
        workers=args.workers,
        ray_address=args.ray_address,
    )
    n = len(summaries[0]["task_indices"])
    title = f"{args.env} / {args.split} ({n} tasks x {len(args.seeds)} seeds)"
    print_rich(format_table(summaries, title=title))
    _report(write_sweep(summaries, args.out, title), args.out)
    env.close()
    return 0


def _budget_lines(acc: dict[str, Any]) -> list[str]:
    """One line per K: the realised HP fraction beside K (and the fixed tau_K's beside it)."""
    lines = []
    for k, b in acc.get("budgets", {}).items():
        fixed = ""
        if b["control"] == "online" and not math.isnan(b["fixed_hp_fraction"]):
            fixed = (
                f" (fixed tau_K: HP {b['fixed_hp_fraction']:.2f}, success "
                f"{100 * b['fixed_success']:.1f}%)"
            )
        ok = "within" if b["hp_within_0.05"] else "NOT within"
        lines.append(
            f"K={k}: realised HP {b['hp_fraction']:.2f} ({b['control']}, {ok} 0.05 of K){fixed}"
            f" | success {100 * b['success']:.1f}% | random at the same rate "
            f"{100 * b['random_success']:.1f}% ({b['margin_vs_random_pp']:+.1f} pp) | gap "
            f"recovered {100 * b['gap_recovered']:.0f}%"
        )
    return lines


def _report(acc: dict[str, Any], out: str) -> None:
    for line in _budget_lines(acc):
        print(line)
    print(f"wrote {out}/results.json, results.md, pareto.png")


def add_parser(sub: Any) -> None:
    p = add_command(sub, "sweep", cmd_sweep)
    add_workers_args(p)
    p.add_argument("--router", default=None, help="calibrated router checkpoint")
    p.add_argument(
        "--merge", nargs="+", default=None, help="merge sweep folders run on disjoint seeds"
    )
    add_env_args(p)
    p.add_argument(
        "--split", default=None, help="test split (default: the task's, valid_unseen for ALFWorld)"
    )
    p.add_argument("--episodes", type=int, default=20, help="tasks per seed")
    add_seeds_arg(p)
    p.add_argument("--budgets", type=budgets, default=list(DEFAULT_BUDGETS), help="K list")
    p.add_argument("--no-oracle", action="store_true", help="skip the simulated oracle")
    p.add_argument(
        "--online-step",
        type=float,
        default=DEFAULT_ONLINE_STEP,
        help="hold each K with online budget control (step in logit units; the fixed "
        "calibrated tau_K is evaluated beside it); 0 = the fixed tau_K only (default: "
        f"{DEFAULT_ONLINE_STEP})",
    )
    p.add_argument("--out", default="runs/sweep", help="output folder")
    add_quiet_arg(p)
