"""Inference-time budget calibration (paper Section 4.2, Eq. 7) and the score-shift
analysis of Appendix D.

Run the router once on a calibration pool disjoint from the training and test tasks
(``valid_train`` by default) at the default threshold 0.5, collect its high-precision
score ``p(tier 0)`` on every router-eligible step, and set ``tau_K = Quantile_{1-K}`` for
each budget K. The thresholds are stored in the checkpoint (atomic rewrite), so
``precision-gym evaluate --router CKPT --budget K`` routes a fraction ~K of the steps to
high precision without retraining.

``precision-gym calibrate --router runs/klst/router.pt --episodes 40``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from precision_gym.error import ConfigError
from training.thresholds import quantile_threshold

__all__ = [
    "DEFAULT_BUDGETS",
    "CalibrationReport",
    "add_parser",
    "calibrate_router",
    "plot_score_shift",
    "pool_scores",
    "score_shift",
]

DEFAULT_BUDGETS = (0.2, 0.4, 0.7)


@dataclass
class CalibrationReport:
    """What :func:`calibrate_router` measured and stored."""

    thresholds: dict[str, float]
    split: str
    task_indices: list[int]
    seed: int
    n_scores: int
    pool_success_rate: float
    pool_hp_fraction: float
    shift: dict[str, float] = field(default_factory=dict)
    router_path: str = ""

    def describe(self) -> str:
        lines = [
            f"calibration pool: {self.split}, {len(self.task_indices)} episodes, "
            f"{self.n_scores} router-eligible steps (success {self.pool_success_rate:.0%}, "
            f"hp fraction at tau=0.5: {self.pool_hp_fraction:.2f})"
        ]
        for k, tau in sorted(self.thresholds.items(), key=lambda kv: float(kv[0])):
            lines.append(f"  K = {float(k):<4g} -> tau_K = {tau:.4g}")
        s = self.shift
        if s:
            lines.append(
                f"score shift (App. D): mean p(high) {s['train_mean']:.3f} on the training "
                f"pool vs {s['calib_mean']:.3f} on the calibration pool; tau = 0.5 sits at the "
                f"{100 * s['train_percentile']:.0f}th percentile of training scores and the "
                f"{100 * s['calib_percentile']:.0f}th of calibration scores"
            )
        return "\n".join(lines)


def pool_scores(
    policy: Any,
    env: Any,
    split: str,
    task_indices: Sequence[int],
    seed: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, list[bool], float]:
    """Roll ``policy`` (at its current threshold) on the tasks; return its high-precision
    scores on every router decision, per-episode success and the realized hp fraction."""
    from training.evaluation import episode_seed

    scores: list[float] = []
    wins: list[bool] = []
    high = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(task_indices), desc=f"calibrate on {split}", unit="ep")
    for ti in task_indices:
        obs, info = env.reset(
            seed=episode_seed(seed, ti),
            options={"split": split, "task_index": int(ti), "charge_router": True},
        )
        done = False
        while not done:
            probs = policy.probs(obs)
            scores.append(float(probs[0, 0]))
            action = int(policy.route(probs)[0])
            high += int(action == 0)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins.append(bool(info["won"]))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return np.asarray(scores), wins, high / max(len(scores), 1)


def training_pool_scores(policy: Any, batch_size: int = 128) -> np.ndarray | None:
    """The router's scores on its KL-ST training states (None when the data is gone)."""
    import torch

    from training.kl_collect import load_kl_dataset

    meta = policy.metadata
    data = meta.get("kl_data")
    if not data or not Path(data).exists():
        return None
    ds = load_kl_dataset(data, max_len=policy.config.max_len)
    tasks = set(meta.get("train_tasks") or [])
    rows = np.flatnonzero(np.isin(ds.task_id, list(tasks))) if tasks else np.arange(len(ds))
    kinds = (meta.get("train_config") or {}).get("kinds") or []
    if kinds:
        rows = rows[np.isin(ds.kind[rows], kinds)]
    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            out.append(policy.high_precision_score(ds.observations(rows[i : i + batch_size])))
    return np.concatenate(out) if out else None


def score_shift(train: np.ndarray, calib: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Means of both score pools and the percentile of ``threshold`` in each (App. D)."""
    train, calib = np.asarray(train, float), np.asarray(calib, float)
    return {
        "train_mean": float(train.mean()),
        "calib_mean": float(calib.mean()),
        "train_percentile": float((train < threshold).mean()),
        "calib_percentile": float((calib < threshold).mean()),
        "train_frac_high": float((train >= threshold).mean()),
        "calib_frac_high": float((calib >= threshold).mean()),
        "n_train": len(train),
        "n_calib": len(calib),
    }


def plot_score_shift(
    train: np.ndarray | None,
    calib: np.ndarray,
    thresholds: dict[str, float],
    path: str | Path,
    simulated: bool = False,
) -> Path:
    """Overlayed histograms of p(high) on both pools with 0.5 and the tau_K marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bins = np.linspace(0.0, 1.0, 41)
    if train is not None:
        ax.hist(train, bins=bins, density=True, alpha=0.5, label="KL-ST training states")
    ax.hist(calib, bins=bins, density=True, alpha=0.5, label="calibration pool (tau = 0.5)")
    ax.axvline(0.5, color="k", ls="--", lw=1, label="default tau = 0.5")
    for k, tau in sorted(thresholds.items(), key=lambda kv: float(kv[0])):
        if math.isfinite(tau):
            ax.axvline(tau, color="tab:red", lw=1)
            ax.annotate(f"K={float(k):g}", (tau, ax.get_ylim()[1] * 0.9), fontsize=7, rotation=90)
    ax.set_xlabel("router high-precision score p(tier 0)")
    ax.set_ylabel("density")
    ax.set_title(
        "Score shift, training vs calibration pool" + (" [SIMULATED]" if simulated else "")
    )
    ax.legend(fontsize=8)
    from training.evaluation import save_figure

    return save_figure(fig, path)


def calibrate_router(
    router_path: str | Path,
    env: Any,
    split: str | None = None,
    episodes: int = 40,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> CalibrationReport:
    """Calibrate the thresholds of a router checkpoint in place (see module docstring).

    ``episodes`` tasks are spread evenly over ``split``; the checkpoint is rewritten
    atomically with ``thresholds[K] = tau_K`` and the report in its metadata.
    """
    from agents.router import DEFAULT_THRESHOLD, TransformerRouterPolicy, _budget_key
    from training.evaluation import select_tasks, write_json

    if not budgets:
        raise ConfigError("expected at least one budget K, got none")
    bad = [k for k in budgets if not 0.0 <= float(k) <= 1.0]
    if bad:
        raise ConfigError(f"budgets K must be in [0, 1], got {bad}")
    policy = TransformerRouterPolicy.load(router_path)
    policy.set_budget(None)
    task = env.unwrapped.task
    if split is None:
        split = task.split_for("calibration")
    if split == task.split_for("test"):
        print(
            f"warning: calibrating on {split}, the test split; the paper calibrates on a pool "
            f"disjoint from train and test ({task.split_for('calibration')})",
            file=sys.stderr,
        )
    tasks = select_tasks(env.unwrapped.task.num_tasks(split), episodes)
    scores, wins, hp = pool_scores(policy, env, split, tasks, seed, progress)
    thresholds = {_budget_key(k): quantile_threshold(scores, float(k)) for k in budgets}
    train_scores = training_pool_scores(policy)
    shift = score_shift(train_scores, scores, DEFAULT_THRESHOLD) if train_scores is not None else {}
    report = CalibrationReport(
        thresholds=thresholds,
        split=split,
        task_indices=list(tasks),
        seed=seed,
        n_scores=len(scores),
        pool_success_rate=float(np.mean(wins)) if wins else math.nan,
        pool_hp_fraction=hp,
        shift=shift,
        router_path=str(router_path),
    )
    policy.thresholds.update(thresholds)
    policy.metadata["calibration"] = asdict(report)
    policy.save(router_path)
    if out_dir is not None:
        out = Path(out_dir)
        simulated = bool(env.unwrapped.simulated)
        plot_score_shift(train_scores, scores, thresholds, out / "score_shift.png", simulated)
        write_json({**asdict(report), "simulated": simulated}, out / "calibration.json")
    return report


def _budgets(text: str) -> list[float]:
    try:
        vals = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--budgets expects comma-separated numbers in [0, 1] like 0.2,0.4,0.7, got {text!r}"
        ) from None
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError(
            f"--budgets expects comma-separated numbers in [0, 1] like 0.2,0.4,0.7, got {text!r}"
        )
    return vals


def cmd_calibrate(args: argparse.Namespace) -> int:
    from training.cli import SIMULATED_BANNER, make_env

    env = make_env(args.env, args.env_kwargs)
    if env.unwrapped.simulated:
        print(SIMULATED_BANNER, file=sys.stderr)
    out_dir = args.out or str(Path(args.router).parent / "calibration")
    report = calibrate_router(
        args.router,
        env,
        split=args.split,
        episodes=args.episodes,
        budgets=args.budgets,
        seed=args.seed,
        out_dir=out_dir,
        progress=not args.quiet,
    )
    env.close()
    print(report.describe())
    print(f"stored thresholds in {args.router}; wrote {out_dir}/score_shift.png")
    return 0


def add_parser(sub: Any) -> None:
    from training.cli import _json_kwargs

    p = sub.add_parser(
        "calibrate", help="budget thresholds tau_K from a calibration pool (Eq. 7), in place"
    )
    p.add_argument("--router", required=True, help="router checkpoint (rewritten in place)")
    p.add_argument("--env", default="DMR-ALFWorld-v0", help="registered env id")
    p.add_argument("--env-kwargs", type=_json_kwargs, default=None, help="JSON env kwargs")
    p.add_argument(
        "--split",
        default=None,
        help="calibration pool split (default: the task's calibration split, valid_train for "
        "ALFWorld, eval for WebShop)",
    )
    p.add_argument("--episodes", type=int, default=40, help="tasks spread over the split")
    p.add_argument(
        "--budgets", type=_budgets, default=list(DEFAULT_BUDGETS), help="comma-separated K"
    )
    p.add_argument("--seed", type=int, default=0, help="episode seed")
    p.add_argument("--out", default=None, help="plot/JSON folder (default: next to router)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_calibrate)
