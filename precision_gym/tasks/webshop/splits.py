"""The goal splits: the benchmark's fixed ranges for a full pool, shares for a small one."""

from __future__ import annotations

__all__ = ["split_bounds"]

_FULL_SPLITS = (500, 1500)  # test = [0, 500), eval = [500, 1500), train = rest
_SMALL_SPLIT_SHARES = (0.2, 0.2)


def split_bounds(n_goals: int) -> dict[str, tuple[int, int]]:
    """``split -> [start, end)`` over ``n_goals`` goals in their (shuffled) order.

    ``test`` = goals ``[0, 500)``, ``eval`` = ``[500, 1500)``, ``train`` = the rest, as in the
    benchmark, when there are at least 2000 goals. Smaller pools are split 20% / 20% / 60% in
    goal order (each at least 1 goal).
    """
    n = n_goals
    if n >= _FULL_SPLITS[1] + _FULL_SPLITS[0]:
        a, b = _FULL_SPLITS
    else:
        a = max(1, round(n * _SMALL_SPLIT_SHARES[0])) if n >= 3 else n
        b = min(n, a + max(1, round(n * _SMALL_SPLIT_SHARES[1]))) if n >= 3 else n
    return {"test": (0, a), "eval": (a, b), "train": (b, n)}
