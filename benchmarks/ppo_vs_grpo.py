"""PPO vs GRPO on the same env, the same env-step budget and the same seeds (issue 5).

SIMULATED precision pair (``precision_gym.backends.simulated``): every figure this script
writes is simulated, not a real-LLM result.

Read top to bottom (CleanRL style):

1. **KL-ST warm start** (issue 4): reuse ``--klst PATH`` or build one with the KL-ST
   pipeline (collect KL on ``train`` with the highest tier, class-weighted CE, Eq. 7
   calibration on ``valid_train``).
2. **Training**, for each seed, both through the ``precision-gym`` CLI, each for exactly
   ``--env-steps`` routing decisions on the same fixed pool of ``--pool-size`` train tasks:
   ``train-grpo`` from the KL-ST checkpoint (then calibrated at the budgets K), and
   ``train-sb3 --algo ppo`` with the KL-ST router's encoder as features extractor (so both
   start from the same network; PPO adds fresh policy/value heads).
3. **Evaluation** on ``--eval-split`` (valid_unseen): always-high, always-low, KL-ST at
   each K, GRPO at each K and PPO; seed s evaluates the routers trained with seed s on
   the same episodes as the baselines (reset seeds from ``training.evaluation``).
4. **Figures**: learning curves (utility = success - lambda * T of the training episodes
   against env steps, mean +- std over seeds) as PNG; Table-1 rows; the paper's
   average-rank criterion (Section 5.3) over the 8-point pool (3 KL-ST points, 3 GRPO
   points, always-high, always-low) and, for the PPO comparison, the same pool + PPO;
   utility at matched high-precision fraction (GRPO@K vs KL-ST@K).
5. ``results.json`` / ``results.md`` in ``--out`` and the section "## PPO vs GRPO (issue 5)"
   of ``benchmarks/RESULTS.md`` (replaced if present, else appended).

    python benchmarks/ppo_vs_grpo.py                 # default budget (documented below)
    python benchmarks/ppo_vs_grpo.py --smoke --out /tmp/smoke --no-results-md
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared" / "alfworld").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared" / "alfworld")

from precision_gym.io import atomic_write_text  # noqa: E402

SECTION = "## PPO vs GRPO (issue 5)"


@dataclass
class Args:
    env_id: str = "DMR-ALFWorld-v0"
    cost_weight: float = 0.02  # lambda of Eq. 8
    seeds: tuple[int, ...] = (0, 1, 2)
    env_steps: int = 240  # routing decisions per algorithm per seed
    pool_size: int = 4  # fixed train tasks (spread over the train split)
    budgets: tuple[float, ...] = (0.2, 0.4, 0.7)
    eval_split: str = "valid_unseen"
    eval_episodes: int = 4  # tasks per seed (spread over the eval split)
    calib_split: str = "valid_train"
    calib_episodes: int = 4
    klst: str | None = None  # a KL-ST router file; None = build one
    kl_episodes: int = 30
    klst_epochs: int = 10
    group_size: int = 3
    tasks_per_batch: int = 1
    grpo_lr: float = 5e-4
    grpo_epochs: int = 4
    grpo_sample_budget: float = 0.4  # GRPO samples around KL-ST's calibrated K = 0.4 point
    ppo_n_steps: int = 64
    ppo_batch_size: int = 32
    out: str = "runs/ppo_vs_grpo"
    jobs: int = 3  # seeds trained + evaluated in parallel processes
    threads: int = 1  # torch threads per process
    only_seed: int = -1  # internal: run one seed (used by --jobs)
    results_md: str | None = str(ROOT / "benchmarks" / "RESULTS.md")
    smoke: bool = False


SMOKE = {  # a tiny run for the subprocess test: WebShop is ~100x faster per step
    "env_id": "DMR-WebShop-v0",
    "seeds": (0,),
    "env_steps": 24,
    "pool_size": 3,
    "budgets": (0.4,),
    "eval_split": "test",
    "eval_episodes": 2,
    "calib_split": "eval",
    "calib_episodes": 2,
    "kl_episodes": 3,
    "klst_epochs": 1,
    "group_size": 2,
    "tasks_per_batch": 1,
    "ppo_n_steps": 16,
    "ppo_batch_size": 16,
    "jobs": 1,
}


def parse_args(argv: list[str] | None = None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Args()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true")
        elif isinstance(value, tuple):
            kind = type(value[0])
            p.add_argument(flag, type=lambda s, k=kind: tuple(k(x) for x in s.split(",")))
        else:
            p.add_argument(flag, type=type(value) if value is not None else str)
        p.set_defaults(**{name: value})
    p.add_argument("--no-results-md", dest="results_md", action="store_const", const=None)
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.smoke:
        given = {k for k in vars(ns) if f"--{k.replace('_', '-')}" in " ".join(argv or [])}
        args = Args(**{**asdict(args), **{k: v for k, v in SMOKE.items() if k not in given}})
    return args


def cli(*argv: str) -> float:
    """Run one ``precision-gym`` command in-process (exactly what the shell runs); seconds."""
    from training.cli import main

    print("$ precision-gym " + shlex.join(argv), flush=True)
    t = time.perf_counter()
    rc = main(list(argv))
    if rc:
        raise SystemExit(f"precision-gym {argv[0]} failed with exit code {rc}")
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- 1. KL-ST
def klst_router(args: Args, out: Path, env: Any) -> tuple[Path, float]:
    from training.calibrate import calibrate_router
    from training.kl_collect import CollectConfig, collect_kl
    from training.kl_st import TrainConfig, train_klst

    t = time.perf_counter()
    if args.klst:
        path = Path(args.klst)
    else:
        env_kwargs = {"cost_weight": args.cost_weight}
        collect_kl(
            out / "kl",
            CollectConfig(
                env_id=args.env_id,
                split="train",
                episodes=args.kl_episodes,
                seed=0,
                shard_size=10,
                env_kwargs=env_kwargs,
            ),
            env=env,
            progress=True,
        )
        result = train_klst(
            TrainConfig(
                data=str(out / "kl"),
                out=str(out / "klst"),
                epochs=args.klst_epochs,
                patience=4,
                d_model=64,
                seed=0,
            ),
            progress=True,
            resume=(out / "klst").exists(),
        )
        path = Path(result.router_path)
    from agents.router import TransformerRouterPolicy, _budget_key

    have = TransformerRouterPolicy.load(path).thresholds
    if any(_budget_key(k) not in have for k in args.budgets):
        calibrate_router(
            path,
            env,
            split=args.calib_split,
            episodes=args.calib_episodes,
            budgets=args.budgets,
            seed=0,
            out_dir=out / "klst_calibration",
        )
    return path, time.perf_counter() - t


# ----------------------------------------------------------------------------- 2. training
def train_both(args: Args, out: Path, klst: Path, seed: int) -> dict[str, Any]:
    common = ["--env-id", args.env_id, "--seed", str(seed), "--pool-size", str(args.pool_size)]
    common += ["--cost-weight", str(args.cost_weight), "--no-progress"]
    budgets = ",".join(str(k) for k in args.budgets)
    grpo_out, ppo_out = out / f"grpo_s{seed}", out / f"ppo_s{seed}"
    grpo_argv = [
        "train-grpo", *common, "--init-checkpoint", str(klst), "--out", str(grpo_out),
        "--total-env-steps", str(args.env_steps), "--max-updates", "100000",
        "--group-size", str(args.group_size), "--tasks-per-batch", str(args.tasks_per_batch),
        "--lr", str(args.grpo_lr), "--epochs", str(args.grpo_epochs), "--budgets", budgets,
        "--sample-budget", str(args.grpo_sample_budget),
        "--calibration-split", args.calib_split,
        "--calibration-episodes", str(args.calib_episodes),
    ]  # fmt: skip
    if (grpo_out / "checkpoint.pt").exists():
        grpo_argv.append("--resume")
    ppo_kwargs = {"n_steps": args.ppo_n_steps, "batch_size": args.ppo_batch_size}
    ppo_argv = [
        "train-sb3", "--algo", "ppo", *common, "--features", "router",
        "--router-checkpoint", str(klst), "--out", str(ppo_out),
        "--total-timesteps", str(args.env_steps), "--algo-kwargs", json.dumps(ppo_kwargs),
    ]  # fmt: skip
    if (ppo_out / "model.zip").exists():
        ppo_argv.append("--overwrite")  # SB3 does not resume: a rerun retrains this seed
    return {
        "grpo_s": cli(*grpo_argv),
        "ppo_s": cli(*ppo_argv),
        "grpo_cmd": "precision-gym " + shlex.join(grpo_argv),
        "ppo_cmd": "precision-gym " + shlex.join(ppo_argv),
    }


# ----------------------------------------------------------------------------- 3. evaluation
def evaluate_seed(args: Args, out: Path, klst: Path, env: Any, seed: int) -> dict[str, Any]:
    """Every point of the comparison on the eval tasks with episode seeds of ``seed``
    (the routers trained with ``seed``); name -> EvalResult."""
    from agents import make_baseline
    from agents.router import load_router_policy
    from training.evaluation import evaluate
    from training.policies import load_policy_file

    policies: dict[str, Any] = {n: make_baseline(n, env) for n in ("always-high", "always-low")}
    for k in args.budgets:
        policies[f"KL-ST K={k:g}"] = load_router_policy(klst, budget=k)
    for k in args.budgets:
        policies[f"GRPO K={k:g}"] = load_router_policy(out / f"grpo_s{seed}/router.pt", k)
    # this run's own PPO model (an SB3 archive is unpickled: trusted because we wrote it)
    policies["PPO"] = load_policy_file(out / f"ppo_s{seed}/model.zip", env, trust_checkpoint=True)
    return {
        name: evaluate(
            policy,
            env,
            env_id=args.env_id,
            split=args.eval_split,
            episodes=args.eval_episodes,
            seeds=[seed],
            router_name=name,
        )
        for name, policy in policies.items()
    }


def run_seed(args: Args, out: Path, klst: Path, env: Any, seed: int) -> Path:
    """Train both algorithms with ``seed``, evaluate every point; write ``seed_<s>.json``."""
    from training.evaluation import write_json

    done = out / f"seed_{seed}.json"
    if done.exists():  # finished before (a rerun only rebuilds the report)
        return done
    times = train_both(args, out, klst, seed)
    t = time.perf_counter()
    results = evaluate_seed(args, out, klst, env, seed)
    times["eval_s"] = time.perf_counter() - t
    return write_json(
        {"times": times, "results": {n: asdict(r) for n, r in results.items()}},
        out / f"seed_{seed}.json",
    )


def merge_seeds(args: Args, out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """EvalResults over all seeds (from the per-seed files) and the per-seed times."""
    from training.evaluation import EpisodeRecord, EvalResult

    merged: dict[str, Any] = {}
    times = []
    for seed in args.seeds:
        data = json.loads((out / f"seed_{seed}.json").read_text())
        times.append(data["times"])
        for name, r in data["results"].items():
            records = [EpisodeRecord(**x) for x in r.pop("records")]
            if name not in merged:
                merged[name] = EvalResult(**{**r, "seeds": []})
            merged[name].seeds.append(seed)
            merged[name].records.extend(records)
    return merged, times


# ----------------------------------------------------------------------------- 4. figures
def average_ranks(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Paper Sec. 5.3: rank by success (desc) and by episode time (asc), ties share the mean
    rank; a point's score is the mean of its two ranks (lower is better)."""

    def ranks(values: np.ndarray) -> np.ndarray:
        order = values.argsort(kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(1, len(values) + 1)
        for v in np.unique(values):  # average ties
            r[values == v] = r[values == v].mean()
        return r

    success = np.array([-round(r["success_rate"], 6) for r in rows])
    times = np.array([r["mean_success_episode_time_s"] for r in rows], dtype=float)
    times = np.where(np.isnan(times), np.inf, np.round(times, 6))
    avg = (ranks(success) + ranks(times)) / 2.0
    return {r["router"]: float(a) for r, a in zip(rows, avg, strict=True)}


def learning_curves(args: Args, out: Path) -> dict[str, Any]:
    """Utility of training episodes vs env steps, binned, mean +- std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import save_figure

    used = [
        json.loads((out / f"{algo}_s{seed}/summary.json").read_text())["env_steps"]
        for algo in ("grpo", "ppo")
        for seed in args.seeds
    ]
    edges = np.linspace(0, max([args.env_steps, *used]), 7)  # the last update/rollout too
    curves: dict[str, Any] = {}
    for algo in ("GRPO", "PPO"):
        per_seed = []
        for seed in args.seeds:
            if algo == "GRPO":
                rows = [json.loads(x) for x in (out / f"grpo_s{seed}/log.jsonl").open()]
                # one point per trajectory: the update's env steps, its batch mean return
                steps = np.array([r["env_steps"] for r in rows], dtype=float)
                util = np.array([r["mean_return"] for r in rows], dtype=float)
                weight = np.array([r["episodes"] for r in rows], dtype=float)
            else:
                rows = [json.loads(x) for x in (out / f"ppo_s{seed}/episodes.jsonl").open()]
                steps = np.array([r["env_steps"] for r in rows], dtype=float)
                util = np.array([r["return"] for r in rows], dtype=float)
                weight = np.ones(len(rows))
            binned = []
            for lo, hi in itertools.pairwise(edges):
                sel = (steps > lo) & (steps <= hi)
                binned.append(np.average(util[sel], weights=weight[sel]) if sel.any() else np.nan)
            per_seed.append(binned)
        arr = np.array(per_seed, dtype=float)
        with warnings.catch_warnings():  # a bin no seed reached stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            curves[algo] = {
                "env_steps": edges[1:].tolist(),
                "mean": np.nanmean(arr, axis=0).tolist(),
                "std": np.nanstd(arr, axis=0).tolist(),
            }
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for algo, c in curves.items():
        x, m, s = np.array(c["env_steps"]), np.array(c["mean"]), np.array(c["std"])
        ax.plot(x, m, marker="o", label=algo)
        ax.fill_between(x, m - s, m + s, alpha=0.2)
    ax.set_xlabel("env steps (routing decisions)")
    ax.set_ylabel(f"utility = success - {args.cost_weight:g} * T (training episodes)")
    ax.set_title(f"{args.env_id}: PPO vs GRPO, {len(args.seeds)} seeds [SIMULATED]")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out / "learning_curves.png", dpi=120)  # atomic; closes the figure
    return curves


def fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_report(
    args: Args, out: Path, summaries: list[dict[str, Any]], curves: dict[str, Any],
    extra: dict[str, Any],
) -> str:  # fmt: skip
    from training.evaluation import markdown_table, pareto_plot, write_json

    by = {s["router"]: s for s in summaries}
    pool8 = [by[n] for n in by if n != "PPO"]
    ranks8 = average_ranks(pool8)
    ranks9 = average_ranks(summaries)
    routers = {n: r for n, r in ranks8.items() if n.startswith(("KL-ST", "GRPO"))}
    best_score = min(routers.values())
    best_points = sorted(n for n, r in routers.items() if r == best_score)
    families = {n.split()[0] for n in best_points}
    best = " = ".join(best_points)
    attributed = "tie between KL-ST and GRPO" if len(families) > 1 else families.pop()

    def klst_utility_at(hp: float) -> float:
        """KL-ST's utility interpolated at a realized HP fraction along its operating curve
        (its K points, anchored by always-low at its HP and always-high at HP 1)."""
        pts = sorted(
            (by[n]["hp_fraction"], by[n]["mean_return"])
            for n in by
            if n.startswith("KL-ST") or n in ("always-low", "always-high")
        )
        xs, ys = zip(*pts, strict=True)
        return float(np.interp(hp, xs, ys))

    matched = [
        {
            "K": k,
            "klst_utility": by[f"KL-ST K={k:g}"]["mean_return"],
            "grpo_utility": by[f"GRPO K={k:g}"]["mean_return"],
            "klst_hp": by[f"KL-ST K={k:g}"]["hp_fraction"],
            "grpo_hp": by[f"GRPO K={k:g}"]["hp_fraction"],
            "klst_success": by[f"KL-ST K={k:g}"]["success_rate"],
            "grpo_success": by[f"GRPO K={k:g}"]["success_rate"],
            "klst_utility_at_grpo_hp": klst_utility_at(by[f"GRPO K={k:g}"]["hp_fraction"]),
        }
        for k in args.budgets
    ]
    title = (
        f"{args.env_id} / {args.eval_split} ({len(summaries[0]['task_indices'])} tasks x "
        f"{len(args.seeds)} seeds) [SIMULATED]"
    )
    pareto_plot(summaries, out / "pareto.png", title=title)
    write_json(
        {
            "args": asdict(args),
            "summaries": summaries,
            "avg_rank_8": ranks8,
            "avg_rank_with_ppo": ranks9,
            "best_router_point": best,
            "best_router_attributed_to": attributed,
            "matched_hp": matched,
            "curves": curves,
            **extra,
        },
        out / "results.json",
    )
    klst_note = (
        f"reused `{extra['klst_checkpoint']}` (--klst)"
        if args.klst
        else f"built here ({args.kl_episodes} KL episodes on train, {args.klst_epochs} epochs)"
    )
    lines = [
        SECTION,
        "",
        f"SIMULATED precision pair ({extra['tiers']}): not real-LLM results. "
        f"Produced by `benchmarks/ppo_vs_grpo.py` on {extra['machine']}.",
        "",
        f"Command: `{extra['command']}`  ",
        f"Wall time: {extra['wall_time_s'] / 60:.1f} min in total "
        f"(KL-ST warm start {extra['klst_s'] / 60:.1f} min, GRPO training "
        f"{sum(extra['grpo_train_s']) / 60:.1f} min, PPO training "
        f"{sum(extra['ppo_train_s']) / 60:.1f} min, evaluation "
        f"{sum(extra['seed_eval_s']) / 60:.1f} min, summed over seeds; seeds ran "
        f"{args.jobs} at a time and took {extra['seeds_s'] / 60:.1f} min of wall time).",
        "",
        f"Budget: {args.env_steps} env steps (routing decisions) per algorithm per seed, seeds "
        f"{list(args.seeds)}, on a fixed pool of {args.pool_size} train tasks; lambda = "
        f"{args.cost_weight:g}/s. GRPO: G = {args.group_size}, {args.tasks_per_batch} tasks per "
        f"update, lr {args.grpo_lr:g}, {args.grpo_epochs} epochs, clip 0.2, no KL penalty, from "
        f"the KL-ST router, sampling around its calibrated K = {args.grpo_sample_budget:g} point "
        "(high-tier logit + log((1 - tau_K) / tau_K)). PPO (SB3): n_steps "
        f"{args.ppo_n_steps}, batch {args.ppo_batch_size}, gamma 1, encoder = the KL-ST "
        f"router's. KL-ST: {klst_note}. Calibration: "
        f"{args.calib_episodes} {args.calib_split} episodes. Evaluation: {args.eval_episodes} "
        f"{args.eval_split} tasks per seed; per-seed routers evaluated on their own seed.",
        "",
        "Per-seed training wall time (s): GRPO "
        + ", ".join(f"{t:.0f}" for t in extra["grpo_train_s"])
        + "; PPO "
        + ", ".join(f"{t:.0f}" for t in extra["ppo_train_s"])
        + ". CLI commands of seed "
        + f"{args.seeds[0]}: `{extra['cli_commands'][0]}` and `{extra['cli_commands'][1]}`.",
        "",
        f"Env steps actually used per seed (an update / an SB3 rollout is not cut short): GRPO "
        f"{extra['env_steps_used']['GRPO']}, PPO {extra['env_steps_used']['PPO']}.",
        "",
        "### Final table (mean ± std over seeds)",
        "",
        markdown_table(summaries),
        "",
        "Utility (mean return = success - lambda*T over all eval episodes): "
        + ", ".join(f"{s['router']} {fmt(s['mean_return'])}" for s in summaries)
        + ".",
        "",
        "### Average rank (paper Sec. 5.3; lower is better)",
        "",
        "| point | success % | EP time (s) | avg rank (8-point pool) | avg rank (pool + PPO) |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in summaries:
        n = s["router"]
        lines.append(
            f"| {n} | {100 * s['success_rate']:.1f} | {fmt(s['mean_success_episode_time_s'], 2)}"
            f" | {fmt(ranks8.get(n, math.nan), 2)} | {fmt(ranks9[n], 2)} |"
        )
    lines += [
        "",
        f"Best router point of the 8-point pool: **{best}** "
        f"(average rank {best_score:.2f}; attributed to {attributed}).",
        "",
        "### GRPO vs KL-ST at matched high-precision fraction",
        "",
        "Realized HP fractions on the eval split differ from K (calibration pool shift), so "
        "besides the same-K comparison the last two columns compare GRPO with KL-ST's utility "
        "interpolated at GRPO's realized HP fraction (KL-ST curve anchored by always-low and "
        "always-high).",
        "",
        "| K | KL-ST HP | GRPO HP | KL-ST success | GRPO success | KL-ST utility | GRPO utility "
        "| delta (same K) | KL-ST utility at GRPO's HP | delta (matched HP) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in matched:
        lines.append(
            f"| {m['K']:g} | {m['klst_hp']:.2f} | {m['grpo_hp']:.2f} | "
            f"{100 * m['klst_success']:.1f} | {100 * m['grpo_success']:.1f} | "
            f"{m['klst_utility']:.3f} | {m['grpo_utility']:.3f} | "
            f"{m['grpo_utility'] - m['klst_utility']:+.3f} | "
            f"{m['klst_utility_at_grpo_hp']:.3f} | "
            f"{m['grpo_utility'] - m['klst_utility_at_grpo_hp']:+.3f} |"
        )
    lines += ["", "### Learning curves (training-episode utility, mean ± std over seeds)", ""]
    lines += ["| env steps | " + " | ".join(curves) + " |", "|---:|" + "---:|" * len(curves)]
    for i, x in enumerate(curves["GRPO"]["env_steps"]):
        cells = [f"{fmt(c['mean'][i])} ± {fmt(c['std'][i])}" for c in curves.values()]
        lines.append(f"| {x:.0f} | " + " | ".join(cells) + " |")
    lines += ["", f"Plots: `{out}/learning_curves.png`, `{out}/pareto.png`.", ""]
    text = "\n".join(lines)
    atomic_write_text(out / "results.md", text)
    return text


def update_results_md(path: Path, section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (up to the next '## ') or append it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        tail = old[nxt + 1 :] if nxt >= 0 else ""
        new = old[:start] + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    atomic_write_text(path, new)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    from training.cli import make_env

    env = make_env(args.env_id, {"cost_weight": args.cost_weight})
    if args.only_seed >= 0:  # a worker of --jobs
        run_seed(args, out, Path(args.klst or ""), env, args.only_seed)
        return 0
    rebuilt = all((out / f"seed_{s}.json").exists() for s in args.seeds)
    previous = out / "results.json"
    klst, klst_s = klst_router(args, out, env)
    print(f"KL-ST router: {klst} ({klst_s:.0f} s)", flush=True)
    t_seeds = time.perf_counter()
    if args.jobs > 1:
        import subprocess

        base = [sys.executable, str(Path(__file__).resolve()), *argv, "--klst", str(klst)]
        pending = list(args.seeds)
        running: list[Any] = []
        while pending or running:
            while pending and len(running) < args.jobs:
                seed = pending.pop(0)
                if (out / f"seed_{seed}.json").exists():
                    continue
                log = (out / f"seed_{seed}.log").open("w")
                cmd = [*base, "--only-seed", str(seed), "--no-results-md"]
                running.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(2)
            for proc in [p for p in running if p.poll() is not None]:
                running.remove(proc)
                if proc.returncode:
                    raise SystemExit(f"{shlex.join(proc.args)} failed ({proc.returncode})")
    else:
        for seed in args.seeds:
            run_seed(args, out, klst, env, seed)
    seeds_s = time.perf_counter() - t_seeds
    results, times = merge_seeds(args, out)
    ref = results["always-high"]
    summaries = [r.summary(ref) for r in results.values()]
    curves = learning_curves(args, out)
    extra = {
        "command": "python benchmarks/ppo_vs_grpo.py " + shlex.join(argv),
        "machine": f"{os.cpu_count()} CPU cores (shared with other jobs), no GPU",
        "klst_checkpoint": str(klst),
        "tiers": ", ".join(env.unwrapped.tier_names),
        "env_steps_used": {
            "GRPO": [
                json.loads((out / f"grpo_s{s}/summary.json").read_text())["env_steps"]
                for s in args.seeds
            ],
            "PPO": [
                json.loads((out / f"ppo_s{s}/summary.json").read_text())["env_steps"]
                for s in args.seeds
            ],
        },
        "klst_s": klst_s,
        "grpo_train_s": [t["grpo_s"] for t in times],
        "ppo_train_s": [t["ppo_s"] for t in times],
        "seed_eval_s": [t["eval_s"] for t in times],
        "seeds_s": seeds_s,
        "cli_commands": [c for t in times for c in (t["grpo_cmd"], t["ppo_cmd"])],
        "wall_time_s": time.perf_counter() - t0,
    }
    if rebuilt and previous.exists():  # report-only rerun: keep the run's own timings
        old = json.loads(previous.read_text())
        for key in ("wall_time_s", "seeds_s", "klst_s", "command"):
            extra[key] = old.get(key, extra[key])
    text = write_report(args, out, summaries, curves, extra)
    print(text)
    if args.results_md:
        update_results_md(Path(args.results_md), text)
        print(f"updated {args.results_md}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
