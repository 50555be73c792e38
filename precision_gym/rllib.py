"""RLlib integration: an env creator that works in RLlib's remote env runners.

::

    from ray.rllib.algorithms.ppo import PPOConfig
    import precision_gym.rllib

    precision_gym.rllib.register_envs()          # "DMR-ALFWorld-v0", "DMR-WebShop-v0" in Tune
    config = (
        PPOConfig()
        .environment("DMR-WebShop-v0", env_config={"max_steps": 10})
        .env_runners(num_env_runners=1)
    )
    algo = config.build_algo()

The creator takes RLlib's ``EnvContext`` (or a plain dict) of env kwargs, imports this
package in the worker (an env runner is a fresh process: a bare ``gym.make("DMR-...")``
there fails with ``NameNotFound``), applies the per-process torch thread default
(``precision_gym.threads``) and picks the ``flat`` observation layout, the one vector RLlib's
default encoders take. ``env_config={"observation_layout": "last"}`` etc. override it.
Ray itself is only needed for :func:`register_envs` (``pip install precision-gym[rllib]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

__all__ = ["DEFAULT_LAYOUT", "env_creator", "make_creator", "register_envs"]

#: the layout RLlib's default encoders read (one Box)
DEFAULT_LAYOUT = "flat"


def env_creator(env_config: Mapping[str, Any] | None = None) -> gym.Env:
    """A ``precision_gym`` env from RLlib's ``EnvContext`` (a dict subclass) or a dict.

    ``env_config["env_id"]`` picks the id (default ``DMR-ALFWorld-v0``); every other key is
    an env kwarg (``max_steps``, ``cost_weight``, ``observation_layout``...).
    """
    from precision_gym import DEFAULT_ENV_ID  # (in a fresh worker: registers the ids)
    from precision_gym.threads import configure_torch_threads

    configure_torch_threads(explicit=False)
    kwargs = dict(env_config or {})  # EnvContext's worker_index etc. are attributes, not keys
    env_id = kwargs.pop("env_id", DEFAULT_ENV_ID)
    kwargs.setdefault("observation_layout", DEFAULT_LAYOUT)
    return gym.make(f"precision_gym:{env_id}", **kwargs)


def make_creator(env_id: str) -> Any:
    """An env creator bound to ``env_id`` (``env_config`` then holds only env kwargs)."""

    def creator(env_config: Mapping[str, Any] | None = None) -> gym.Env:
        return env_creator({**dict(env_config or {}), "env_id": env_id})

    creator.__name__ = creator.__qualname__ = f"create_{env_id.replace('-', '_')}"
    return creator


def register_envs() -> list[str]:
    """Register every id of ``precision_gym.ENV_IDS`` with Tune (``register_env``) and
    return them; call it in the driver before ``config.build_algo()``."""
    from ray.tune.registry import register_env

    from precision_gym import ENV_IDS

    for env_id in ENV_IDS:
        register_env(env_id, make_creator(env_id))
    return list(ENV_IDS)
