"""Baseline routers: a fixed tier, random at a given high-precision rate, and the
simulated-pair oracle."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import RouterPolicy, batch_len

__all__ = ["ConstantTierPolicy", "OracleRouter", "RandomRouter"]


class ConstantTierPolicy(RouterPolicy):
    """Always the same tier (``always-high`` = 0, ``always-low`` = last)."""

    reads_observation = False

    def __init__(self, n_tiers: int, tier: int) -> None:
        super().__init__(n_tiers)
        if not 0 <= tier < n_tiers:
            raise ValueError(f"tier must be in [0, {n_tiers}), got {tier}")
        self.tier = tier
        self.name = (
            "always-high"
            if tier == 0
            else ("always-low" if tier == n_tiers - 1 else f"always-tier-{tier}")
        )

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        return np.full(batch_len(obs), self.tier, dtype=np.int64)


class RandomRouter(RouterPolicy):
    """Highest tier with probability ``p_high``, otherwise a uniformly drawn lower tier.

    ``reset(seed)`` reseeds it, so evaluation with the same seeds routes identically.
    """

    reads_observation = False

    def __init__(self, n_tiers: int, p_high: float, seed: int | None = None) -> None:
        super().__init__(n_tiers)
        if not 0.0 <= p_high <= 1.0:
            raise ValueError(f"p_high must be in [0, 1], got {p_high}")
        self.p_high = float(p_high)
        self.name = f"random(p_high={self.p_high:g})"
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        n = batch_len(obs)
        high = self._rng.random(n) < self.p_high
        low = self._rng.integers(1, self.n_tiers, size=n)
        return np.where(high, 0, low).astype(np.int64)


class OracleRouter(RouterPolicy):
    """SIMULATED-pair oracle: the lowest tier whose proposal equals the expert's command,
    the highest tier where none does (high precision exactly where the low tier would
    err). It reads the env's ``proposals()``, so it needs the env and simulated tiers."""

    name = "oracle"
    reads_observation = False

    def __init__(self, env: Any) -> None:
        self.env = getattr(env, "unwrapped", env)
        super().__init__(int(self.env.action_space.n))

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        if batch_len(obs) != 1:
            raise ValueError(
                "OracleRouter reads the state of the one env it was built with: expected a "
                f"batch of 1 observation, got {batch_len(obs)}"
            )
        props = self.env.proposals()
        expert = props["expert"]
        for tier in range(self.n_tiers - 1, -1, -1):
            if props["actions"][tier] == expert:
                return np.array([tier], dtype=np.int64)
        return np.array([0], dtype=np.int64)
