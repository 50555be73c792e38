"""Baseline routers: a fixed tier, random at a given high-precision rate, the two
simulated-pair oracles (the per-state oracle and the kind oracle), and a simulated-pair
diagnostic wrapper (:class:`LowWhenDerailed`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import RouterPolicy, batch_len

__all__ = [
    "ConstantTierPolicy",
    "KindOracleRouter",
    "LowWhenDerailed",
    "OracleRouter",
    "RandomRouter",
]


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


def _proposals(router: Any, obs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The pending state's ``proposals()`` of the one env an oracle router was built with."""
    if batch_len(obs) != 1:
        raise ValueError(
            f"{type(router).__name__} reads the state of the one env it was built with: "
            f"expected a batch of 1 observation, got {batch_len(obs)}"
        )
    return router.env.proposals()


def _state_model(router: Any, obs: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    """``proposals()`` of a SIMULATED pair, whose state model holds ``key``."""
    props = _proposals(router, obs)
    if key not in props:
        raise ValueError(
            f"{type(router).__name__} needs SIMULATED tiers' state model ({key} in "
            f"proposals()); got proposals with keys {sorted(props)}"
        )
    return props


def _nothing_to_save(props: dict[str, Any]) -> bool:
    """The episode has derailed (every tier errs alike) or nothing is left to do."""
    return bool(props["derailed"] or props["expert"] is None)


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
        props = _proposals(self, obs)
        expert = props["expert"]
        for tier in range(self.n_tiers - 1, -1, -1):
            if props["actions"][tier] == expert:
                return np.array([tier], dtype=np.int64)
        return np.array([0], dtype=np.int64)


class KindOracleRouter(RouterPolicy):
    """SIMULATED-pair *kind* oracle: what a router that reads the history could hope to know.

    The simulated tiers fail at *critical* states, drawn by a hash of (task, expert command)
    with a probability that depends only on the step's kind (the expert command's verb class)
    and the task type. :class:`OracleRouter` knows which states are critical; no router that
    reads observations can, on tasks it has not seen. This one knows what such a router could
    at best infer: each tier's chance that the pending state is critical (``critical_share``
    of :meth:`~precision_gym.envs.MixedPrecisionAgentEnv.proposals`) and whether the episode
    has derailed. It picks the lowest-precision tier whose critical share is below
    ``min_share`` (the highest tier when none is), and the lowest tier once the episode has
    derailed (every tier then errs alike) or nothing is left to do, if ``low_when_derailed``.

    ``min_share = 0`` routes every live step high. Evaluating a few ``min_share`` values and
    keeping the best gives an *attainable* ceiling for routers that read observations, beside
    the per-state oracle's unattainable one. It is not a strict bound: it ignores the small
    rise of the non-critical error after "Nothing happens." observations, which a router can
    see, and it chooses among a few thresholds only.

    It stands in for a router, so by default (``charge_router=True``) each of its steps pays
    the router's per-call time, as every learned router's does: without it, its edge over a
    router at the same HP fraction includes that router's own latency (on the simulated
    ALFWorld pair at lambda = 0.5/s about 0.08 utility per episode, most of the edge).
    ``charge_router=False`` (name suffix ``,no router time``) gives the figure before
    session 15.
    """

    reads_observation = False

    def __init__(
        self,
        env: Any,
        min_share: float = 0.0,
        low_when_derailed: bool = True,
        charge_router: bool = True,
    ) -> None:
        self.env = getattr(env, "unwrapped", env)
        super().__init__(int(self.env.action_space.n))
        if not 0.0 <= float(min_share) <= 1.0:
            raise ValueError(f"min_share must be in [0, 1], got {min_share}")
        self.min_share = float(min_share)
        self.low_when_derailed = bool(low_when_derailed)
        self.charge_router = bool(charge_router)
        free = "" if self.charge_router else ",no router time"
        self.name = f"kind-oracle(share>={self.min_share:g}{free})"

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        props = _state_model(self, obs, "critical_share")
        low = self.n_tiers - 1
        if self.low_when_derailed and _nothing_to_save(props):
            return np.array([low], dtype=np.int64)
        shares = props["critical_share"]
        for tier in range(low, 0, -1):
            if shares[tier] < self.min_share:
                return np.array([tier], dtype=np.int64)
        return np.array([0], dtype=np.int64)


class LowWhenDerailed(RouterPolicy):
    """SIMULATED-pair diagnostic: ``inner``'s tier, except the lowest tier once the episode
    has derailed or nothing is left to do (the flags :class:`KindOracleRouter` reads from the
    simulated state model).

    Played beside ``inner`` on the same episodes, the difference is what moving derailed
    states to the bottom of ``inner``'s ranking is worth at ``inner``'s threshold. That part of
    the headroom is learnable by a router that reads observations: a derailed agent's loops
    and "Nothing happens." observations show in its history. It is not a router to deploy:
    it reads the simulator's state.
    """

    def __init__(self, inner: RouterPolicy, env: Any) -> None:
        from agents.base import charges_router

        self.env = getattr(env, "unwrapped", env)
        super().__init__(int(self.env.action_space.n))
        if inner.n_tiers != self.n_tiers:
            raise ValueError(
                f"inner router has {inner.n_tiers} tiers, the env {self.n_tiers}: expected equal"
            )
        self.inner = inner
        self.charge_router = charges_router(inner)  # the inner router still runs every step
        self.reads_observation = inner.reads_observation
        self.name = f"{inner.name} + low-when-derailed"

    def reset(self, seed: int | None = None) -> None:
        self.inner.reset(seed)

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        props = _state_model(self, obs, "derailed")
        tier = self.inner.predict(obs, deterministic=deterministic)[0]
        if _nothing_to_save(props):
            return np.array([self.n_tiers - 1], dtype=np.int64)
        return np.asarray(tier, dtype=np.int64).reshape(1)
