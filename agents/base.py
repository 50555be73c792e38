"""The one policy contract every router follows (Stable-Baselines3's ``predict``).

``predict(obs, state=None, episode_start=None, deterministic=True) -> (actions, state)``
takes a single observation (dict of arrays) or a batch (leading vector-env dimension) and
returns tier indices of the same batch shape, so one evaluation function serves the
baselines, the Transformer router, SB3 models and user algorithms alike.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from precision_gym.deprecation import renamed_attribute, warn_renamed

__all__ = ["RouterPolicy", "batch_len", "charges_router", "is_batched"]


def is_batched(obs: dict[str, np.ndarray]) -> bool:
    """True when ``obs["mask"]`` carries a leading batch dimension."""
    return np.asarray(obs["mask"]).ndim == 2


def batch_len(obs: dict[str, np.ndarray] | np.ndarray) -> int:
    """Observations in a batch: a dict observation's or a vector layout's leading size."""
    return len(obs["mask"]) if isinstance(obs, dict) else len(obs)


def charges_router(policy: Any) -> bool:
    """Whether ``policy`` pays the router's per-call time (``charge_router``; True when it
    does not say: a learned policy of another library). A duck-typed policy that only has
    the deprecated ``charges_router_cost`` is read with a warning."""
    if hasattr(policy, "charge_router"):
        return bool(policy.charge_router)
    if hasattr(policy, "charges_router_cost"):
        warn_renamed(f"{type(policy).__name__}.charges_router_cost", "charge_router")
        return bool(policy.charges_router_cost)
    return True


class RouterPolicy(abc.ABC):
    """Base class of routing policies.

    Attributes:
        n_tiers: size of the action space (tiers ordered high -> low precision).
        charge_router: whether running this policy costs the per-call router latency of
            Eq. 9 (a learned router does; fixed-tier baselines do not): the evaluator passes
            it to the env as the reset option of the same name. ``charges_router_cost`` is
            its deprecated name (a subclass that still sets it is read, with a warning).
    """

    charge_router: bool = False
    charges_router_cost = renamed_attribute("charges_router_cost", "charge_router")
    name: str = "policy"
    #: True for policies that read every observation themselves (dict or vector layout,
    #: single or batched) in :meth:`_predict_any`: ``predict`` then hands it over unchanged
    reads_any_layout: bool = False
    #: False for policies that never look at the observation (fixed tier, random, oracle):
    #: they then run on an env of any ``observation_layout``, not only ``dict``
    reads_observation: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        old = cls.__dict__.get("charges_router_cost")
        if old is not None and not isinstance(old, property):  # a policy of the old API
            warn_renamed(f"{cls.__name__}.charges_router_cost", "charge_router", stacklevel=4)
            cls.charge_router = bool(old)
            del cls.charges_router_cost

    def __init__(self, n_tiers: int) -> None:
        if n_tiers < 2:
            raise ValueError(f"a router needs at least 2 tiers, got n_tiers={n_tiers}")
        self.n_tiers = n_tiers

    def reset(self, seed: int | None = None) -> None:  # noqa: B027 - optional hook
        """Called at each episode start by the evaluator (seeds stochastic policies)."""

    @abc.abstractmethod
    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        """Tier indices ``[batch]`` for a batched observation."""

    def _predict_any(self, obs: Any, deterministic: bool) -> np.ndarray:
        """Tier indices of the observation's batch shape, any layout (``reads_any_layout``)."""
        raise NotImplementedError(
            f"{type(self).__name__} sets reads_any_layout = True: expected it to implement "
            "_predict_any, found the base class's"
        )

    def predict(
        self,
        obs: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        if self.reads_any_layout:
            return self._predict_any(obs, deterministic).astype(np.int64), state
        if isinstance(obs, np.ndarray) and not self.reads_observation:  # a vector layout
            batched = obs.ndim == 2
            actions = self._predict_batch(obs if batched else obs[None], deterministic)
            return (actions if batched else actions[0]).astype(np.int64), state
        if not isinstance(obs, dict) or "mask" not in obs or "embeddings" not in obs:
            raise ValueError(
                f"{self.name} expects the env's dict observation with keys 'embeddings' and "
                f"'mask' (observation_layout='dict'), got {type(obs).__name__}"
                + (f" with keys {sorted(obs)}" if isinstance(obs, dict) else "")
                + (f" of shape {obs.shape}" if isinstance(obs, np.ndarray) else "")
            )
        if is_batched(obs):
            return self._predict_batch(obs, deterministic).astype(np.int64), state
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        return self._predict_batch(batch, deterministic).astype(np.int64)[0], state
