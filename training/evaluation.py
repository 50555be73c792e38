"""One evaluation function for every policy that follows the ``predict`` contract.

Protocol (the paper's): each seed runs the same task sample of a split; an episode's reset
seed is derived from (seed, task index), so a router is compared with the baselines on the
very same episodes. Reported per router, each as mean over seeds with the spread (std):
success rate, mean episode time on successful episodes (modeled, Eq. 9), speedup vs the
always-highest-precision router on the same episodes, and the high-precision fraction of
router decisions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import charges_router
from precision_gym.io import atomic_write_bytes

__all__ = [
    "EpisodeRecord",
    "EvalResult",
    "episode_seed",
    "episode_utility",
    "evaluate",
    "format_table",
    "pareto_plot",
    "rollout",
    "save_figure",
    "select_tasks",
    "utility_summary",
    "write_json",
]


@dataclass
class EpisodeRecord:
    seed: int
    task_index: int
    task_id: str
    task_type: str
    won: bool
    score: float
    episode_time_s: float
    steps: int
    decisions: int
    high_decisions: int
    episode_return: float
    backend_error: str | None = None
    tiers: list[int] = field(default_factory=list)  # the router's decision at each step


def _field(record: EpisodeRecord | Mapping[str, Any], name: str) -> Any:
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


def episode_utility(record: EpisodeRecord | Mapping[str, Any], cost_weight: float) -> float:
    """``success - lambda * T`` (Eq. 8) of one episode record, at ``cost_weight`` = lambda per
    second; ``record`` is an :class:`EpisodeRecord` or its dict form (``evaluate --out``)."""
    from precision_gym.cost import trajectory_return

    won, time_s = _field(record, "won"), _field(record, "episode_time_s")
    return trajectory_return(float(won), time_s, cost_weight)


def utility_summary(
    records: Sequence[EpisodeRecord | Mapping[str, Any]], cost_weight: float
) -> dict[str, float]:
    """Success rate, HP fraction (pooled over decisions) and mean utility of ``records``."""
    decisions = sum(_field(r, "decisions") for r in records)
    return {
        "success": float(np.mean([bool(_field(r, "won")) for r in records])),
        "hp_fraction": sum(_field(r, "high_decisions") for r in records) / max(decisions, 1),
        "utility": float(np.mean([episode_utility(r, cost_weight) for r in records])),
    }


@dataclass
class EvalResult:
    router: str
    env: str
    split: str
    seeds: list[int]
    task_indices: list[int]
    simulated: bool
    records: list[EpisodeRecord] = field(default_factory=list)

    def _by_seed(self) -> dict[int, list[EpisodeRecord]]:
        out: dict[int, list[EpisodeRecord]] = {s: [] for s in self.seeds}
        for r in self.records:
            out[r.seed].append(r)
        return out

    def per_seed(self) -> list[dict[str, float]]:
        rows = []
        for seed, recs in self._by_seed().items():
            wins = [r for r in recs if r.won]
            decisions = sum(r.decisions for r in recs)
            rows.append(
                {
                    "seed": seed,
                    "success_rate": float(np.mean([r.won for r in recs])) if recs else 0.0,
                    "mean_success_episode_time_s": (
                        float(np.mean([r.episode_time_s for r in wins])) if wins else math.nan
                    ),
                    "hp_fraction": (
                        sum(r.high_decisions for r in recs) / decisions if decisions else 0.0
                    ),
                    "mean_return": float(np.mean([r.episode_return for r in recs]))
                    if recs
                    else 0.0,
                    "mean_episode_time_s": (
                        float(np.mean([r.episode_time_s for r in recs])) if recs else 0.0
                    ),
                }
            )
        return rows

    def summary(self, reference: EvalResult | None = None) -> dict[str, Any]:
        """The JSON contract of ``precision-gym evaluate``."""
        rows = self.per_seed()

        def stat(key: str) -> tuple[float, float]:
            vals = np.array([r[key] for r in rows], dtype=float)
            vals = vals[~np.isnan(vals)]
            if not len(vals):
                return math.nan, math.nan
            return float(vals.mean()), float(vals.std())

        out: dict[str, Any] = {"router": self.router, "env": self.env, "split": self.split}
        for key in ("success_rate", "mean_success_episode_time_s", "hp_fraction", "mean_return"):
            out[key], out[f"{key}_std"] = stat(key)
        speedups = []
        if reference is not None:
            ref = {r["seed"]: r for r in reference.per_seed()}
            for row in rows:
                ref_t = ref.get(row["seed"], {}).get("mean_success_episode_time_s", math.nan)
                t = row["mean_success_episode_time_s"]
                if not (math.isnan(ref_t) or math.isnan(t)) and t > 0:
                    speedups.append(ref_t / t)
        out["speedup_vs_high"] = float(np.mean(speedups)) if speedups else math.nan
        out["speedup_vs_high_std"] = float(np.std(speedups)) if speedups else math.nan
        out["episodes"] = len(self.task_indices)
        out["seeds"] = list(self.seeds)
        out["task_indices"] = list(self.task_indices)
        out["simulated"] = self.simulated
        out["backend_errors"] = sum(r.backend_error is not None for r in self.records)
        out["per_seed"] = rows
        out["records"] = [asdict(r) for r in self.records]
        return out


def select_tasks(n_tasks: int, episodes: int | None) -> list[int]:
    """``episodes`` task indices spread evenly over the split (all when None)."""
    if episodes is None or episodes >= n_tasks:
        return list(range(n_tasks))
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    return sorted({int(i) for i in np.linspace(0, n_tasks - 1, episodes).round()})


def episode_seed(seed: int, task_index: int) -> int:
    """Reset seed of one (seed, task) episode: the same for every router compared."""
    return (seed * 1_000_003 + task_index * 7919) % (2**31 - 1)


def rollout(
    env: Any, policy: Any, seed: int, task_index: int, split: str, deterministic: bool = True
) -> EpisodeRecord:
    """Run one episode of ``policy`` on ``env`` and return its record."""
    eseed = episode_seed(seed, task_index)
    if hasattr(policy, "reset"):
        policy.reset(eseed)
    obs, info = env.reset(
        seed=eseed,
        options={"split": split, "task_index": task_index, "charge_router": charges_router(policy)},
    )
    state, start = None, np.ones(1, dtype=bool)
    ret, done, tiers = 0.0, False, []
    while not done:
        action, state = policy.predict(
            obs, state=state, episode_start=start, deterministic=deterministic
        )
        start = np.zeros(1, dtype=bool)
        tiers.append(int(np.asarray(action).reshape(-1)[0]))
        obs, reward, terminated, truncated, info = env.step(tiers[-1])
        ret += float(reward)
        done = terminated or truncated
    return EpisodeRecord(
        seed=seed,
        task_index=task_index,
        task_id=info["task_id"],
        task_type=info["task_type"],
        won=bool(info["won"]),
        score=float(info["score"]),
        episode_time_s=float(info["episode_time_s"]),
        steps=int(info["step"]),
        decisions=int(info["decisions"]),
        high_decisions=int(round(info["hp_fraction"] * info["decisions"])),
        episode_return=ret,
        backend_error=info.get("backend_error"),
        tiers=tiers,
    )


def evaluate(
    policy: Any,
    env: Any,
    *,
    env_id: str = "",
    split: str = "valid_unseen",
    episodes: int | None = 20,
    seeds: Sequence[int] = (0, 1, 2),
    task_indices: Sequence[int] | None = None,
    router_name: str | None = None,
    progress: bool = True,
    deterministic: bool = True,
    runner: Callable[[list[tuple[int, int]]], list[EpisodeRecord]] | None = None,
) -> EvalResult:
    """Evaluate ``policy`` on ``env`` over ``seeds`` x the task sample of ``split``.

    ``runner`` plays the ordered ``(seed, task_index)`` episodes elsewhere and returns their
    records in order (``training.rollout_workers.run_distributed``: worker processes or Ray
    actors); by default they are played here on ``env``, one after another.
    """
    unwrapped = getattr(env, "unwrapped", env)
    if task_indices is None:
        task_indices = select_tasks(unwrapped.task.num_tasks(split), episodes)
    result = EvalResult(
        router=router_name or getattr(policy, "name", type(policy).__name__),
        env=env_id or getattr(getattr(env, "spec", None), "id", "") or type(unwrapped).__name__,
        split=split,
        seeds=list(seeds),
        task_indices=list(task_indices),
        simulated=bool(getattr(unwrapped, "simulated", False)),
    )
    jobs = [(s, i) for s in seeds for i in task_indices]
    if runner is not None:
        result.records.extend(runner(jobs))
        return result
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"eval {result.router}", unit="ep", leave=False)
    for seed, index in jobs:
        result.records.append(rollout(env, policy, seed, index, split, deterministic))
        if bar is not None:
            won = sum(r.won for r in result.records)
            bar.set_postfix(success=f"{won / len(result.records):.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    return result


def _fmt(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def format_table(summaries: Sequence[dict[str, Any]], title: str = "") -> Any:
    """A Table-1 style rich table of evaluate() summaries."""
    from rich.table import Table

    simulated = any(s.get("simulated") for s in summaries)
    table = Table(title=(title + (" [SIMULATED precision pair]" if simulated else "")).strip())
    for col in ("router", "success %", "EP time (s, successes)", "speedup", "HP fraction"):
        table.add_column(col, justify="left" if col == "router" else "right")
    for s in summaries:
        table.add_row(
            s["router"],
            _fmt(s["success_rate"], s["success_rate_std"], 100.0),
            _fmt(s["mean_success_episode_time_s"], s["mean_success_episode_time_s_std"], 1.0, 2),
            "-" if math.isnan(s["speedup_vs_high"]) else f"{s['speedup_vs_high']:.2f}x",
            _fmt(s["hp_fraction"], s["hp_fraction_std"], 1.0, 2),
        )
    return table


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| router | success % | EP time (s, successes) | speedup | HP fraction |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in summaries:
        speed = "-" if math.isnan(s["speedup_vs_high"]) else f"{s['speedup_vs_high']:.2f}x"
        lines.append(
            f"| {s['router']} | {_fmt(s['success_rate'], s['success_rate_std'], 100.0)} | "
            f"{_fmt(s['mean_success_episode_time_s'], s['mean_success_episode_time_s_std'], 1.0, 2)}"
            f" | {speed} | {_fmt(s['hp_fraction'], s['hp_fraction_std'], 1.0, 2)} |"
        )
    return "\n".join(lines)


def pareto_plot(
    summaries: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Success rate vs mean successful-episode time, one labelled point per router."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    simulated = any(s.get("simulated") for s in summaries)
    fig, ax = plt.subplots(figsize=(8.4, 4.8))
    markers = "osD^v<>Xph*"
    for i, s in enumerate(summaries):
        x, y = s["mean_success_episode_time_s"], 100.0 * s["success_rate"]
        if math.isnan(x):
            continue
        ax.errorbar(
            x,
            y,
            xerr=s["mean_success_episode_time_s_std"],
            yerr=100.0 * s["success_rate_std"],
            fmt=markers[i % len(markers)],
            capsize=3,
            label=s["router"],
        )
    # a legend beside the axes: labels of nearby points never overlap
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set_xlabel("mean episode time on successful episodes (s, modeled Eq. 9)")
    ax.set_ylabel("success rate (%)")
    ax.set_title((title + ("\nSIMULATED precision pair" if simulated else "")).strip())
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=120)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Lay out, write as PNG atomically (creating the folder) and close a matplotlib figure."""
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write strict JSON atomically (temp file + rename): a crash never leaves half a file.
    NaN / infinite floats (e.g. ``speedup_vs_high`` without a reference run) become ``null``:
    bare ``NaN`` is not JSON and breaks other readers."""
    text = json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (recursively)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):
        return _finite(asdict(obj))
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
