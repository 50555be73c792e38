"""Statistics for comparing routers: bootstrap confidence intervals over tasks and headroom.

The resampling unit is the **task**: every router of a comparison runs the same tasks with
the same episode seeds (``training.evaluation``), so per-task values are paired across
routers and a difference between two routers is bootstrapped on the paired per-task
differences. A value per task is first averaged over seeds (:func:`per_task`).

Pure functions of arrays; tested on known numbers in ``tests/test_stats.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from precision_gym.error import ConfigError

__all__ = [
    "CI",
    "bootstrap_ci",
    "clustered_auc_diff",
    "curve_at",
    "curve_at_runs",
    "headroom",
    "paired_bootstrap_diff",
    "per_task",
    "rank_auc",
    "simultaneous_level",
]


@dataclass(frozen=True)
class CI:
    """A point estimate with a two-sided ``level`` confidence interval ``[lo, hi]``."""

    value: float
    lo: float
    hi: float
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a significant difference)."""
        return self.lo > 0.0 or self.hi < 0.0

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "level": self.level}

    def fmt(self, digits: int = 3, scale: float = 1.0) -> str:
        v, lo, hi = (x * scale for x in (self.value, self.lo, self.hi))
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _check(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ConfigError(f"{name} needs at least one value, got an empty array")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(
            f"{name} expects finite values, got {int((~np.isfinite(arr)).sum())} non-finite"
        )
    return arr


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
) -> CI:
    """Percentile bootstrap CI of ``statistic`` (default: the mean) over ``values``.

    ``values`` holds one number per resampling unit (a task). Deterministic for a ``seed``.
    A single value gives a zero-width interval.
    """
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    x = _check(values, "bootstrap_ci")
    stat = statistic or (lambda a: a.mean(axis=-1))
    point = float(stat(x[None, :])[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    boots = np.asarray(stat(x[idx]), dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return CI(point, float(lo), float(hi), level)


def paired_bootstrap_diff(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> CI:
    """CI of ``mean(a - b)`` over paired units (the same tasks): the significance test of
    "router A beats router B" used by the comparisons."""
    xa, xb = _check(a, "paired_bootstrap_diff(a)"), _check(b, "paired_bootstrap_diff(b)")
    if xa.shape != xb.shape:
        raise ConfigError(
            f"paired_bootstrap_diff needs one value per task for both routers: "
            f"expected equal lengths, got {len(xa)} and {len(xb)}"
        )
    return bootstrap_ci(xa - xb, level=level, n_boot=n_boot, seed=seed)


def curve_at(
    points: Sequence[tuple[float, Sequence[float] | np.ndarray]], x: float
) -> tuple[np.ndarray, bool]:
    """A router's per-task values at operating point ``x`` (e.g. an HP fraction), read off
    its measured curve ``points`` = ``[(x_i, per-task values at x_i), ...]``.

    Between the two measured points that bracket ``x`` the per-task values are interpolated
    linearly in ``x``, task by task (so a paired bootstrap over tasks stays paired); outside
    the curve the nearest end is returned. The flag says whether ``x`` lies on the curve
    (inside its range). Points are sorted by ``x``; their per-task vectors must have one
    length."""
    if not points:
        raise ConfigError("curve_at needs at least one measured point, got none")
    curve = sorted(((float(px), _check(v, "curve_at(values)")) for px, v in points),
                   key=lambda c: c[0])  # fmt: skip
    lengths = {len(v) for _, v in curve}
    if len(lengths) != 1:
        raise ConfigError(
            f"curve_at needs one value per task at every point: expected equal lengths, "
            f"got {sorted(lengths)}"
        )
    xs = [c[0] for c in curve]
    if x < xs[0] or x > xs[-1] or len(xs) == 1:
        i = 0 if x <= xs[0] else len(xs) - 1
        return curve[i][1].copy(), x == xs[i]
    j = min(max(int(np.searchsorted(xs, x)), 1), len(xs) - 1)
    w = (x - xs[j - 1]) / max(xs[j] - xs[j - 1], 1e-12)
    return (1 - w) * curve[j - 1][1] + w * curve[j][1], True


def curve_at_runs(
    runs: Sequence[tuple[float, Sequence[tuple[float, Sequence[float] | np.ndarray]]]],
) -> tuple[np.ndarray, bool]:
    """A reference router's per-task values at the operating points of several runs, run by
    run: ``runs`` = ``[(x_r, points_r), ...]``, each run's router at ``x_r`` and the
    reference's curve ``points_r`` measured on that run's own episodes. Each run reads
    :func:`curve_at` ``(points_r, x_r)``; the per-task values are averaged over runs (as the
    router's own per-task values are, over its runs' episodes). The flag says whether every
    ``x_r`` lay on its curve.

    Read run by run, a run whose router sits on a measured point (one that shipped its start)
    reads that point itself, so it adds exactly 0 to a difference. Pooled first, the runs' HP
    would mix a moved router with unmoved ones, and the chord of a curve that is not monotone
    there would read as a gain or a loss of the unmoved ones."""
    if not runs:
        raise ConfigError("curve_at_runs needs at least one run, got none")
    values, inside = zip(*(curve_at(points, x) for x, points in runs), strict=True)
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise ConfigError(
            f"curve_at_runs needs the same tasks in every run: expected equal lengths, "
            f"got {sorted(lengths)}"
        )
    return np.mean(values, axis=0), all(inside)


def simultaneous_level(family: int, level: float = 0.95) -> float:
    """The per-comparison confidence that holds ``level`` for ``family`` comparisons at once
    (Bonferroni): ``1 - (1 - level) / family``; ``family`` = 1 gives ``level``. Among many
    comparisons one lone 95% CI that excludes 0 is what chance gives."""
    if isinstance(family, bool) or not isinstance(family, int) or family < 1:
        raise ConfigError(f"simultaneous_level needs a family of >= 1 comparisons, got {family!r}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"simultaneous_level needs a level in (0, 1), got {level}")
    return 1.0 - (1.0 - level) / family


def rank_auc(pos: Sequence[float] | np.ndarray, neg: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of scores separating ``pos`` from ``neg``: the chance that a
    random positive scores above a random negative, ties counting one half (Mann-Whitney U /
    (n_pos n_neg), from average ranks). 1: every positive above every negative; 0.5: no
    separation."""
    p, n = np.asarray(pos, dtype=float).ravel(), np.asarray(neg, dtype=float).ravel()
    if not len(p) or not len(n):
        raise ConfigError(
            f"rank_auc needs at least one positive and one negative score, got {len(p)} "
            f"positive and {len(n)} negative"
        )
    both = np.concatenate([p, n])
    order = np.argsort(both, kind="mergesort")
    _, first, counts = np.unique(both[order], return_index=True, return_counts=True)
    ranks = np.empty(len(both))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average ranks
    return float((ranks[: len(p)].sum() - len(p) * (len(p) + 1) / 2.0) / (len(p) * len(n)))


def clustered_auc_diff(
    clusters: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    level: float = 0.95,
    n_boot: int = 2_000,
    seed: int = 0,
) -> CI:
    """CI of ``AUC(a) - AUC(b)``: two scorers (``a``, ``b``) of the same items with the same
    labels (True = positive), in clusters ``[(scores_a, scores_b, labels), ...]`` (one per
    task: the states of its episodes). Percentile bootstrap over clusters, so the states of
    one episode, which are not independent, are resampled together; a resample without both
    classes is drawn again. Deterministic for a ``seed``."""
    if not clusters:
        raise ConfigError("clustered_auc_diff needs at least one cluster, got none")
    for i, (a, b, y) in enumerate(clusters):
        if not len(a) == len(b) == len(y):
            raise ConfigError(
                f"clustered_auc_diff cluster {i}: expected equal lengths of scores_a, scores_b "
                f"and labels, got {len(a)}, {len(b)} and {len(y)}"
            )
    a = [np.asarray(c[0], dtype=float) for c in clusters]
    b = [np.asarray(c[1], dtype=float) for c in clusters]
    y = [np.asarray(c[2], dtype=bool) for c in clusters]

    def diff(idx: np.ndarray) -> float | None:
        ya = np.concatenate([y[i] for i in idx])
        if ya.all() or not ya.any():
            return None
        sa, sb = np.concatenate([a[i] for i in idx]), np.concatenate([b[i] for i in idx])
        return rank_auc(sa[ya], sa[~ya]) - rank_auc(sb[ya], sb[~ya])

    value = diff(np.arange(len(clusters)))
    if value is None:
        raise ConfigError("clustered_auc_diff needs both classes among the labels, got one")
    rng = np.random.default_rng(seed)
    draws: list[float] = []
    while len(draws) < n_boot:
        d = diff(rng.integers(0, len(clusters), len(clusters)))
        if d is not None:
            draws.append(d)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return CI(value=float(value), lo=float(lo), hi=float(hi), level=level)


def per_task(
    records: Iterable[Any], key: str | Callable[[Any], float]
) -> tuple[list[int], np.ndarray]:
    """Average ``key`` of evaluation records over seeds, one value per task index.

    ``records`` are :class:`training.evaluation.EpisodeRecord` (or dicts with the same
    fields); returns the sorted task indices and the per-task means.
    """
    get = key if callable(key) else (lambda r: _field(r, key))  # type: ignore[misc]
    sums: dict[int, list[float]] = {}
    for r in records:
        sums.setdefault(int(_field(r, "task_index")), []).append(float(get(r)))
    if not sums:
        raise ConfigError("per_task needs at least one record, got none")
    tasks = sorted(sums)
    return tasks, np.array([np.mean(sums[t]) for t in tasks])


def _field(r: Any, name: str) -> Any:
    return r[name] if isinstance(r, Mapping) else getattr(r, name)


def headroom(
    utilities: Mapping[str, Sequence[float] | np.ndarray],
    *,
    start: str,
    ceiling: str = "oracle",
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """What an RL stage that starts from router ``start`` could gain, at most.

    ``utilities`` maps router names (always-high, always-low, the oracle, the start router,
    ...) to per-task utilities on the same tasks. Returns each router's mean utility with its
    CI and the gap ``ceiling - start`` (paired CI): the most refinement could add. A gap whose
    CI includes 0 means no gain can be shown on these tasks.
    """
    for name in (start, ceiling):
        if name not in utilities:
            raise ConfigError(
                f"headroom needs the {name!r} router's utilities; got {sorted(utilities)}"
            )
    routers = {
        name: bootstrap_ci(v, level=level, n_boot=n_boot, seed=seed).as_dict()
        for name, v in utilities.items()
    }
    gap = paired_bootstrap_diff(
        utilities[ceiling], utilities[start], level=level, n_boot=n_boot, seed=seed
    )
    return {"routers": routers, "start": start, "ceiling": ceiling, "gap": gap.as_dict()}
