"""Inference-time budget calibration (paper Section 4.2, Eq. 7) and the score-shift
analysis of Appendix D.

**Eq. 7 (the paper's one pass).** Run the router once on a calibration pool disjoint from
the training and test tasks (``valid_train`` by default) at the default threshold 0.5,
collect its high-precision score ``p(tier 0)`` on every router-eligible step, and set
``tau_K = Quantile_{1-K}`` for each budget K.

**Fixed-point refinement (this library's extension, on by default).** The pool of Eq. 7
is the state distribution of the router *at tau = 0.5*, not at ``tau_K``. In a multi-step
task the two differ: a router that sends few steps high derails more episodes, and a
derailed episode loops to the step limit, so its many near-zero scores dominate the pool
and ``tau_K`` comes out far too low (measured on the simulated ALFWorld pair: K = 0.4
realised 1.00 on valid_unseen). :func:`refine_threshold` therefore re-runs the pool *at*
the current ``tau_K``, measures the realised high-precision fraction ``h(tau)`` there and
re-takes the quantile of the pool's own scores, a fixed point of Eq. 7
(``tau = Quantile_{1-K}(scores collected at tau)``, i.e. ``h(tau) = K``), safeguarded by
a bracket on ``tau`` (``h`` falls as ``tau`` rises) with logit-space bisection whenever the
re-quantile step leaves the bracket. It stops once ``|h - K| <= tolerance`` and keeps the
best threshold it saw. ``refine_iters=0`` (``--refine-iters 0``) is exactly Eq. 7.
The pool episodes are seeded, so every ``h(tau)`` is reproducible.

The thresholds are stored in the checkpoint (atomic rewrite), so
``precision-gym evaluate --router CKPT --budget K`` routes a fraction ~K of the steps to
high precision without retraining.

``precision-gym calibrate --router runs/klst/router.pt --episodes 40``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.router import DEFAULT_THRESHOLD, TransformerRouterPolicy, _budget_key, logit, sigmoid
from precision_gym.error import ConfigError
from training.cli.common import add_command, add_env_args, add_quiet_arg, budgets, open_env
from training.evaluation import episode_seed, save_figure, select_tasks, write_json
from training.kl_collect import kl_folders, load_kl_dataset
from training.thresholds import quantile_threshold

__all__ = [
    "DEFAULT_BUDGETS",
    "CalibrationReport",
    "PoolRun",
    "add_parser",
    "calibrate_router",
    "plot_refinement",
    "plot_score_shift",
    "pool_scores",
    "refine_threshold",
    "score_shift",
]

DEFAULT_BUDGETS = (0.2, 0.4, 0.7)
#: fixed-point iterations per budget after the Eq. 7 pass (0 = the paper's one pass)
DEFAULT_REFINE_ITERS = 5
#: stop refining once the pool's realised high-precision fraction is this close to K
DEFAULT_TOLERANCE = 0.02
_EPS = 1e-6


@dataclass(frozen=True)
class PoolRun:
    """One pass of the router over the calibration pool at threshold ``tau``."""

    tau: float
    hp_fraction: float
    success_rate: float
    n_scores: int


def refine_threshold(
    run_pool: Callable[[float], tuple[np.ndarray, float, float]],
    budget: float,
    tau0: float,
    max_iters: int = DEFAULT_REFINE_ITERS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[float, list[PoolRun]]:
    """Find ``tau`` with ``h(tau) ~= budget`` on the pool's own state distribution.

    ``run_pool(tau) -> (scores, hp_fraction, success_rate)`` rolls the router over the
    calibration pool routing ``score >= tau`` high; ``h`` falls as ``tau`` rises. Starting
    from ``tau0`` (Eq. 7's ``tau_K``), each iteration runs the pool at the current ``tau``
    and narrows the bracket ``(lo, hi)`` with ``h(lo) > K > h(hi)``. The next ``tau`` is
    ``Quantile_{1-K}`` of the scores just seen (the fixed point of Eq. 7) while only one
    side of the bracket has been measured, then a safeguarded secant step (linear in
    ``h`` against ``logit(tau)``, kept within the middle 80% of the bracket); the bracket's
    logit midpoint whenever a proposal leaves it or repeats a tried ``tau``. Returns the
    best ``tau`` seen (smallest ``|h - K|``, ties to the earliest) and the pool runs.
    """
    if max_iters < 1:
        raise ConfigError(f"max_iters must be >= 1, got {max_iters}")
    if not 0.0 < tolerance < 1.0:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance}")
    if budget <= 0.0 or budget >= 1.0:  # never / always high: Eq. 7 is exact
        return tau0, []
    lo, hi = 0.0, 1.0 + _EPS  # h(lo) > K > h(hi); the ends are measured once tried
    h_lo = h_hi = math.nan
    tau = float(tau0)
    history: list[PoolRun] = []
    best: PoolRun | None = None
    for _ in range(max_iters):
        scores, hp, success = run_pool(tau)
        run = PoolRun(
            tau=tau, hp_fraction=float(hp), success_rate=float(success), n_scores=len(scores)
        )
        history.append(run)
        if best is None or abs(run.hp_fraction - budget) < abs(best.hp_fraction - budget):
            best = run
        if abs(run.hp_fraction - budget) <= tolerance:
            break
        if run.hp_fraction > budget and tau >= lo:
            lo, h_lo = tau, run.hp_fraction
        elif run.hp_fraction < budget and tau <= hi:
            hi, h_hi = tau, run.hp_fraction
        if math.isfinite(h_lo) and math.isfinite(h_hi):
            # both sides measured: interpolate h linearly in logit(tau), kept off the ends
            t = (h_lo - budget) / (h_lo - h_hi)
            x_lo, x_hi = logit(lo), logit(min(hi, 1.0))
            proposal = sigmoid(x_lo + min(max(t, 0.1), 0.9) * (x_hi - x_lo))
        else:
            # one side known: the fixed point of Eq. 7 on the pool just seen
            proposal = quantile_threshold(scores, budget) if len(scores) else math.nan
            if not lo < proposal < hi:
                proposal = sigmoid(0.5 * (logit(lo) + logit(min(hi, 1.0))))
        if any(math.isclose(proposal, r.tau, rel_tol=1e-9) for r in history):
            proposal = sigmoid(0.5 * (logit(lo) + logit(min(hi, 1.0))))
        tau = float(proposal)
    assert best is not None
    return best.tau, history


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
    #: the one-pass thresholds of Eq. 7 (pool at tau = 0.5), before refinement
    eq7_thresholds: dict[str, float] = field(default_factory=dict)
    #: per budget, the pool runs of the fixed-point refinement (tau, hp, success, n)
    refinement: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    refine_iters: int = 0
    tolerance: float = DEFAULT_TOLERANCE

    def pool_hp(self, budget: str) -> float:
        """The calibration pool's realised hp fraction at the stored tau_K (nan if the
        threshold was not refined, i.e. never run on the pool)."""
        tau = self.thresholds[budget]
        for run in self.refinement.get(budget, []):
            if run["tau"] == tau:
                return float(run["hp_fraction"])
        return math.nan

    def describe(self) -> str:
        lines = [
            f"calibration pool: {self.split}, {len(self.task_indices)} episodes, "
            f"{self.n_scores} router-eligible steps (success {self.pool_success_rate:.0%}, "
            f"hp fraction at tau=0.5: {self.pool_hp_fraction:.2f})"
        ]
        method = (
            f"Eq. 7 + fixed-point refinement (<= {self.refine_iters} pool runs per K, "
            f"tolerance {self.tolerance:g})"
            if self.refine_iters
            else "Eq. 7 (one pass at tau = 0.5)"
        )
        lines.append(f"method: {method}")
        for k, tau in sorted(self.thresholds.items(), key=lambda kv: float(kv[0])):
            line = f"  K = {float(k):<4g} -> tau_K = {tau:.4g}"
            if self.refine_iters:
                eq7 = self.eq7_thresholds.get(k, math.nan)
                runs = self.refinement.get(k, [])
                path = ", ".join(f"{r['tau']:.3g}->{r['hp_fraction']:.2f}" for r in runs)
                line += (
                    f"  (pool hp {self.pool_hp(k):.2f}; Eq. 7 gave {eq7:.4g}; "
                    f"tau->hp: {path or 'exact'})"
                )
            lines.append(line)
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
    threshold: float | None = None,
) -> tuple[np.ndarray, list[bool], float]:
    """Roll ``policy`` (at ``threshold``, default its current one) on the tasks; return its
    high-precision scores on every router decision, per-episode success and the realized
    hp fraction (high decisions / decisions, pooled as the evaluator pools them)."""
    scores: list[float] = []
    wins: list[bool] = []
    high = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        tau_txt = f"{policy.threshold if threshold is None else threshold:.3g}"
        bar = tqdm(total=len(task_indices), desc=f"calibrate on {split} (tau={tau_txt})", unit="ep")
    for ti in task_indices:
        obs, info = env.reset(
            seed=episode_seed(seed, ti),
            options={"split": split, "task_index": int(ti), "charge_router": True},
        )
        done = False
        while not done:
            probs = policy.probs(obs)
            scores.append(float(probs[0, 0]))
            action = int(policy.route(probs, threshold)[0])
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

    meta = policy.metadata
    data = meta.get("kl_data")
    if not data or not all(p.exists() for p in kl_folders(data)):
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
    """Means of both score pools, the percentile of ``threshold`` in each (App. D) and the
    high-precision fraction routing at ``threshold`` gives each (``*_hp_fraction``; the
    deprecated ``*_frac_high`` keys repeat it for one more release)."""
    train, calib = np.asarray(train, float), np.asarray(calib, float)
    hp_train, hp_calib = float((train >= threshold).mean()), float((calib >= threshold).mean())
    return {
        "train_mean": float(train.mean()),
        "calib_mean": float(calib.mean()),
        "train_percentile": float((train < threshold).mean()),
        "calib_percentile": float((calib < threshold).mean()),
        "train_hp_fraction": hp_train,
        "calib_hp_fraction": hp_calib,
        "train_frac_high": hp_train,
        "calib_frac_high": hp_calib,
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
    refine_iters: int = DEFAULT_REFINE_ITERS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> CalibrationReport:
    """Calibrate the thresholds of a router checkpoint in place (see module docstring).

    ``episodes`` tasks are spread evenly over ``split``; Eq. 7 runs the pool once at
    tau = 0.5, then (``refine_iters > 0``) :func:`refine_threshold` runs it again at each
    candidate ``tau_K`` until the pool's realised hp fraction is within ``tolerance`` of
    K. The checkpoint is rewritten atomically with ``thresholds[K] = tau_K`` and the
    report in its metadata.
    """
    if not budgets:
        raise ConfigError("expected at least one budget K, got none")
    bad = [k for k in budgets if not 0.0 <= float(k) <= 1.0]
    if bad:
        raise ConfigError(f"budgets K must be in [0, 1], got {bad}")
    if refine_iters < 0:
        raise ConfigError(f"refine_iters must be >= 0 (0 = Eq. 7 only), got {refine_iters}")
    if not 0.0 < tolerance < 1.0:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance}")
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
    eq7 = {_budget_key(k): quantile_threshold(scores, float(k)) for k in budgets}
    thresholds = dict(eq7)
    refinement: dict[str, list[dict[str, float]]] = {}
    if refine_iters:
        cache: dict[float, tuple[np.ndarray, float, float]] = {
            DEFAULT_THRESHOLD: (scores, hp, float(np.mean(wins)) if wins else math.nan)
        }

        def run_pool(tau: float) -> tuple[np.ndarray, float, float]:
            if tau not in cache:  # seeded episodes: one run per distinct tau suffices
                sc, w, h = pool_scores(policy, env, split, tasks, seed, progress, threshold=tau)
                cache[tau] = (sc, h, float(np.mean(w)) if w else math.nan)
            return cache[tau]

        for k in budgets:
            key = _budget_key(k)
            tau, runs = refine_threshold(run_pool, float(k), eq7[key], refine_iters, tolerance)
            thresholds[key] = tau
            refinement[key] = [asdict(r) for r in runs]
            if progress and runs:
                print(
                    f"K = {float(k):g}: tau_K {eq7[key]:.4g} (Eq. 7) -> {tau:.4g}, pool hp "
                    + ", ".join(f"{r.hp_fraction:.2f}" for r in runs),
                    file=sys.stderr,
                )
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
        eq7_thresholds=eq7,
        refinement=refinement,
        refine_iters=refine_iters,
        tolerance=tolerance,
    )
    policy.thresholds.update(thresholds)
    policy.metadata["calibration"] = asdict(report)
    policy.save(router_path)
    if out_dir is not None:
        out = Path(out_dir)
        simulated = bool(env.unwrapped.simulated)
        plot_score_shift(train_scores, scores, thresholds, out / "score_shift.png", simulated)
        if refinement:
            plot_refinement(report, out / "calibration_refinement.png", simulated)
        write_json({**asdict(report), "simulated": simulated}, out / "calibration.json")
    return report


def plot_refinement(report: CalibrationReport, path: str | Path, simulated: bool = False) -> Path:
    """Realised hp fraction of the calibration pool against tau, one curve per budget K,
    with each K as a horizontal target line and the chosen tau_K circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = {(r["tau"], r["hp_fraction"]) for runs in report.refinement.values() for r in runs}
    pts.add((0.5, report.pool_hp_fraction))
    xs, ys = zip(*sorted(pts), strict=True)
    ax.plot(xs, ys, "o-", color="0.6", lw=1, ms=3, label="pool hp at tau (all runs)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (k, runs) in enumerate(sorted(report.refinement.items(), key=lambda kv: float(kv[0]))):
        c = colors[i % len(colors)]
        ax.axhline(float(k), color=c, ls=":", lw=1)
        ax.plot(
            [r["tau"] for r in runs],
            [r["hp_fraction"] for r in runs],
            "x--",
            color=c,
            label=f"K={float(k):g}: iterates",
        )
        tau = report.thresholds[k]
        ax.plot([tau], [report.pool_hp(k)], "o", mfc="none", ms=10, color=c)
        eq7 = report.eq7_thresholds.get(k)
        if eq7 is not None and math.isfinite(eq7) and eq7 > 0:
            ax.axvline(eq7, color=c, lw=0.8, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("threshold tau on p(high)  (thin vertical lines: Eq. 7's one-pass tau_K)")
    ax.set_ylabel("realised high-precision fraction on the pool")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Budget calibration on {report.split}" + (" [SIMULATED]" if simulated else ""))
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, path)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """budget thresholds tau_K from a calibration pool (Eq. 7), in place"""
    env = open_env(args.env, args.env_kwargs)
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
        refine_iters=args.refine_iters,
        tolerance=args.tolerance,
    )
    env.close()
    print(report.describe())
    print(f"stored thresholds in {args.router}; wrote {out_dir}/score_shift.png")
    return 0


def add_parser(sub: Any) -> None:
    p = add_command(sub, "calibrate", cmd_calibrate)
    p.add_argument("--router", required=True, help="router checkpoint (rewritten in place)")
    add_env_args(p)
    p.add_argument(
        "--split",
        default=None,
        help="calibration pool split (default: the task's calibration split, valid_train for "
        "ALFWorld, eval for WebShop)",
    )
    p.add_argument("--episodes", type=int, default=40, help="tasks spread over the split")
    p.add_argument(
        "--budgets", type=budgets, default=list(DEFAULT_BUDGETS), help="comma-separated K"
    )
    p.add_argument("--seed", type=int, default=0, help="episode seed")
    p.add_argument(
        "--refine-iters",
        type=int,
        default=DEFAULT_REFINE_ITERS,
        help="pool runs per K of the fixed-point refinement (0 = the paper's one-pass Eq. 7)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="stop refining when the pool's realised hp fraction is within this of K",
    )
    p.add_argument("--out", default=None, help="plot/JSON folder (default: next to router)")
    add_quiet_arg(p)
