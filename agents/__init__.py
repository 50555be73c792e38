"""Routing policies that read the env's observations (routers and baselines)."""

from __future__ import annotations

from typing import Any

from agents.base import RouterPolicy
from agents.baselines import (
    ConstantTierPolicy,
    KindOracleRouter,
    LowWhenDerailed,
    OracleRouter,
    RandomRouter,
)

__all__ = [
    "BASELINE_NAMES",
    "ConstantTierPolicy",
    "KindOracleRouter",
    "LowWhenDerailed",
    "OracleRouter",
    "RandomRouter",
    "RouterPolicy",
    "make_baseline",
]

BASELINE_NAMES = ("always-high", "always-low", "random", "oracle", "kind-oracle")


def make_baseline(
    name: str,
    env: Any,
    p_high: float | None = None,
    seed: int | None = None,
    min_share: float = 0.0,
    charge_router: bool = True,
) -> RouterPolicy:
    """A baseline router by name for ``env`` (``random`` needs ``p_high``; ``kind-oracle``
    takes ``min_share`` and ``charge_router``, see :class:`KindOracleRouter`)."""
    n_tiers = int(env.action_space.n)
    if name == "always-high":
        return ConstantTierPolicy(n_tiers, 0)
    if name == "always-low":
        return ConstantTierPolicy(n_tiers, n_tiers - 1)
    if name == "random":
        if p_high is None:
            raise ValueError("the random router needs p_high (e.g. --p-high 0.4), got None")
        return RandomRouter(n_tiers, p_high, seed=seed)
    if name == "oracle":
        return OracleRouter(env)
    if name == "kind-oracle":
        return KindOracleRouter(env, min_share=min_share, charge_router=charge_router)
    raise ValueError(f"unknown router {name!r}: expected one of {list(BASELINE_NAMES)}")
