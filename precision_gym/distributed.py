"""Ray, when it is used: one place that connects to (or starts) a Ray instance.

Ray is optional (the ``ray`` extra, Ray core only): rollout workers as Ray actors
(``training.rollout_workers``, ``collect-kl``) and the batched env's task engines on Ray actors
(:class:`precision_gym.envs.task_workers.RayTaskSlots`) all connect through
:func:`ray_session`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from precision_gym.error import ConfigError

__all__ = ["ray_session"]


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """The ``ray`` module connected to ``address`` (``"auto"``, ``"ray://host:10001"``, or
    ``"local"`` to start an instance on this machine). An instance the caller already
    started is used and left running; one started here is shut down afterwards."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"--ray-address {address} needs Ray: install the ray extra "
            "(pip install 'precision-gym[ray]', Ray core >= 2.9)"
        ) from None
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
