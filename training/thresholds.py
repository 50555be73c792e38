"""Pure threshold maths of KL-ST and calibration.

* :func:`plateau_threshold` picks ``tau_KL`` in the sparse plateau between the
  low-divergence mass and the high-divergence tail of the log-KL histogram (paper
  Section 4.2 and 5.5: a boundary in a sparse region gives stable labels).
* :func:`quantile_threshold` is the budget calibration of Eq. 7.
* :func:`thresholds_between` fills the gaps between calibrated thresholds, evenly in logit:
  the extra points that measure a router's whole curve.
* :func:`class_weights`, :func:`balanced_accuracy` are the KL-ST loss weights (Eq. 6) and
  its held-out metric.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from precision_gym.error import ConfigError

__all__ = [
    "ThresholdChoice",
    "balanced_accuracy",
    "class_weights",
    "kl_labels",
    "plateau_threshold",
    "plot_kl_histogram",
    "quantile_threshold",
    "thresholds_between",
]

#: KL values are floored here before taking log10 (exact zeros: identical distributions)
KL_FLOOR = 1e-8


@dataclass
class ThresholdChoice:
    """A chosen ``tau_KL`` with what it splits.

    Attributes:
        tau: the threshold (label 1 iff KL > tau).
        method: "auto" (plateau) or "manual".
        n_below / n_above: states with KL <= tau / KL > tau.
        gap_low / gap_high: the sparse plateau's KL range (auto; NaN for manual).
        gap_count: states inside that plateau.
    """

    tau: float
    method: str
    n_below: int
    n_above: int
    gap_low: float = math.nan
    gap_high: float = math.nan
    gap_count: int = 0

    @property
    def frac_above(self) -> float:
        total = self.n_below + self.n_above
        return self.n_above / total if total else math.nan

    def describe(self) -> str:
        gap = (
            f", plateau [{self.gap_low:.3g}, {self.gap_high:.3g}] holds {self.gap_count} states"
            if self.method == "auto"
            else ""
        )
        return (
            f"tau_KL = {self.tau:.4g} ({self.method}): {self.n_below} states below, "
            f"{self.n_above} above ({self.frac_above:.1%} need high precision){gap}"
        )


def _clean(kl: np.ndarray) -> np.ndarray:
    x = np.asarray(kl, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if not len(x):
        raise ConfigError("expected at least one finite KL value, got none")
    if (x < 0).any():
        raise ConfigError(f"KL values must be >= 0, got min {x.min():.3g}")
    return x


def plateau_threshold(
    kl: np.ndarray,
    bins_per_decade: int = 4,
    sparse_fraction: float = 0.01,
    min_side_fraction: float = 0.01,
    min_low_fraction: float = 0.5,
    tau: float | None = None,
) -> ThresholdChoice:
    """``tau_KL`` in the widest sparse gap of the log10-KL histogram between the two modes.

    The histogram has ``bins_per_decade`` log-spaced bins per decade over the observed
    range (KL floored at 1e-8). A bin is *sparse* when it holds at most
    ``sparse_fraction`` of the states. Candidate plateaus are maximal runs of sparse bins
    with at least ``min_side_fraction`` of the states on each side and at least
    ``min_low_fraction`` below (so they separate the low-divergence *mass* from the
    high-divergence tail, not two parts of the mass); the widest wins (ties: the one
    holding fewer states) and ``tau`` is its geometric centre. When no run qualifies the
    sparsity bar is doubled until one does; a sample without two sides (e.g. all KL
    equal) raises :class:`ConfigError`. ``tau`` given: manual override (counts only).
    """
    x = _clean(kl)
    if tau is not None:
        if not tau > 0:
            raise ConfigError(f"a manual tau_KL must be > 0, got {tau}")
        return ThresholdChoice(float(tau), "manual", int((x <= tau).sum()), int((x > tau).sum()))
    if bins_per_decade < 1:
        raise ConfigError(f"bins_per_decade must be >= 1, got {bins_per_decade}")
    lx = np.log10(np.maximum(x, KL_FLOOR))
    lo = math.floor(lx.min() * bins_per_decade) / bins_per_decade
    hi = math.ceil(lx.max() * bins_per_decade) / bins_per_decade
    n_bins = max(int(round((hi - lo) * bins_per_decade)), 1)
    edges = np.linspace(lo, hi + (1.0 / bins_per_decade if hi == lo else 0.0), n_bins + 1)
    counts, edges = np.histogram(lx, bins=edges)
    total = len(x)
    cum = np.concatenate([[0], np.cumsum(counts)])
    min_side = max(1, math.ceil(min_side_fraction * total))
    bar = sparse_fraction * total
    while bar <= total:
        best: tuple[float, int, int, int] | None = None  # (-width, count, start, end)
        i = 0
        while i < len(counts):
            if counts[i] > bar:
                i += 1
                continue
            j = i
            while j + 1 < len(counts) and counts[j + 1] <= bar:
                j += 1
            left, right = cum[i], total - cum[j + 1]
            if left >= max(min_side, min_low_fraction * total) and right >= min_side:
                inside = int(cum[j + 1] - cum[i])
                cand = (-(j - i + 1), inside, i, j)
                if best is None or cand[:2] < best[:2]:
                    best = cand
            i = j + 1
        if best is not None:
            _, inside, i, j = best
            g_lo, g_hi = float(edges[i]), float(edges[j + 1])
            t = 10.0 ** ((g_lo + g_hi) / 2.0)
            return ThresholdChoice(
                tau=t,
                method="auto",
                n_below=int((x <= t).sum()),
                n_above=int((x > t).sum()),
                gap_low=10.0**g_lo,
                gap_high=10.0**g_hi,
                gap_count=inside,
            )
        bar = max(bar * 2.0, 1.0)
    raise ConfigError(
        f"found no sparse gap with >= {min_side} states above and >= "
        f"{max(min_side, math.ceil(min_low_fraction * total))} below among {total} KL values "
        f"(range {x.min():.3g} .. {x.max():.3g}): pass a manual tau_KL"
    )


def kl_labels(kl: np.ndarray, tau: float) -> np.ndarray:
    """Eq. 5: ``y = 1[KL > tau]`` for a 1-D KL array (1 = needs high precision).

    For a ``[n, n_tiers - 1]`` array (several lower tiers) the label is a tier index: the
    lowest-precision tier whose KL vs the highest is ``<= tau`` (0 when none is), so the
    two-tier case maps ``y = 1`` to tier 0 (high) and ``y = 0`` to tier 1.
    """
    k = np.asarray(kl, dtype=np.float64)
    if k.ndim == 1:
        return (k > tau).astype(np.int64)
    ok = k <= tau
    n_low = k.shape[1]
    out = np.zeros(len(k), dtype=np.int64)
    for tier in range(1, n_low + 1):
        out = np.where(ok[:, tier - 1], tier, out)
    return out


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Eq. 6 weights ``w_c = N / (C_present * N_c)``: inversely proportional to class
    frequency, mean 1 over the samples; absent classes get 0."""
    y = np.asarray(labels, dtype=np.int64).ravel()
    if not len(y):
        raise ConfigError("class_weights needs at least one label, got none")
    if y.min() < 0 or y.max() >= n_classes:
        raise ConfigError(f"labels must be in [0, {n_classes}), got {y.min()}..{y.max()}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    w = np.zeros(n_classes)
    w[counts > 0] = len(y) / (present * counts[counts > 0])
    return w


def balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    y = np.asarray(labels).ravel()
    p = np.asarray(predictions).ravel()
    if len(y) != len(p):
        raise ConfigError(f"labels and predictions differ in length: {len(y)} vs {len(p)}")
    if not len(y):
        raise ConfigError("balanced_accuracy needs at least one label, got none")
    recalls = [float((p[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls))


def quantile_threshold(scores: np.ndarray, budget: float) -> float:
    """``tau_K = Quantile_{1-K}(scores)`` (Eq. 7): routing ``score >= tau_K`` to high
    precision sends a fraction ~K of the pool's steps there. ``K = 0`` gives ``+inf``
    (never high), ``K = 1`` the minimum score (always high). NaN scores are ignored."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[~np.isnan(s)]
    if not len(s):
        raise ConfigError("quantile_threshold needs at least one score, got none")
    if math.isnan(budget) or not 0.0 <= budget <= 1.0:
        raise ConfigError(f"budget K must be in [0, 1], got {budget}")
    if budget == 0.0:
        return math.inf
    if budget == 1.0:
        return float(s.min())
    return float(np.quantile(s, 1.0 - budget))


def thresholds_between(taus: Sequence[float], n: int) -> list[float]:
    """``n`` thresholds strictly inside each gap between two adjacent distinct values of
    ``taus`` (e.g. a router's calibrated ``tau_K``), evenly spaced in logit, ascending; the
    ``taus`` themselves are left out. A router's scores crowd near 0 and 1, so even steps in
    probability would put every point at one end of a gap: on the simulated ALFWorld pair
    (DMR-ALFWorld-v1) ``tau`` falls from 0.075 at K = 0.4 to 0.0015 at K = 0.7, and three
    points in logit land near 0.004, 0.01 and 0.028."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"points per gap must be an integer >= 0, got {n!r}")
    values = sorted({float(t) for t in taus})
    bad = [t for t in values if not 0.0 < t < 1.0]
    if bad:
        raise ConfigError(f"thresholds must lie strictly between 0 and 1, got {bad}")
    from agents.router import logit, sigmoid

    out = []
    for lo, hi in itertools.pairwise(logit(t) for t in values):
        out += [sigmoid(lo + (hi - lo) * i / (n + 1)) for i in range(1, n + 1)]
    return out


def plot_kl_histogram(
    kl: np.ndarray,
    choice: ThresholdChoice,
    path: str | os.PathLike[str],
    title: str = "",
    simulated: bool = False,
    bins_per_decade: int = 4,
) -> Path:
    """Log10-KL histogram with ``tau_KL`` (and the plateau, when auto) marked; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = _clean(kl)
    lx = np.log10(np.maximum(x, KL_FLOOR))
    lo, hi = math.floor(lx.min()), math.ceil(lx.max()) + 1e-9
    bins = np.arange(lo, hi + 1.0 / bins_per_decade, 1.0 / bins_per_decade)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.hist(lx, bins=bins, color="tab:blue", alpha=0.8)
    ax.set_yscale("log")
    ax.axvline(math.log10(choice.tau), color="tab:red", lw=2, label=f"tau_KL = {choice.tau:.3g}")
    if choice.method == "auto" and not math.isnan(choice.gap_low):
        ax.axvspan(
            math.log10(choice.gap_low), math.log10(choice.gap_high), color="tab:red", alpha=0.1
        )
    ax.set_xlabel(f"log10 KL(high || low) (floored at {KL_FLOOR:g})")
    ax.set_ylabel("decision states")
    head = title or "action-only KL of high-precision rollouts"
    ax.set_title(
        f"{head}{' [SIMULATED]' if simulated else ''}\n"
        f"{choice.n_below} below / {choice.n_above} above tau",
        fontsize=9,
    )
    ax.legend()
    from training.evaluation import save_figure

    return save_figure(fig, path)
