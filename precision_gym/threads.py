"""Per-process thread hygiene for torch (the sentence encoder, routers, in-process LLMs).

Torch's default intra-op pool takes every core of the machine in every process. With several
env or rollout worker processes on one machine those pools fight for the same cores: measured
on a 2-core machine, 2 torch threads per process under contention cost 39% of env throughput
and made MiniLM encoding 6x slower per text (191 ms vs 17 ms with 1 thread).

precision-gym therefore sets **one** intra-op thread per process by default, the first time a
component that runs torch is built (the encoder, a rollout worker). Override it with the
environment variable ``PRECISION_GYM_TORCH_THREADS`` (an integer >= 1, or ``auto`` to keep
torch's own default) or by calling :func:`configure_torch_threads` yourself before building
envs; a value set explicitly is never overridden by the default.

A batched vector env with W local worker processes runs its one encoder call per step on up
to W Python threads while those workers wait (``SentenceEncoder.encode(threads=W)``): one
forward per token length, each forward on one torch thread, so the embeddings are those of a
single thread. Two torch threads *inside* one forward would change the last bits of some
short texts' embeddings (measured: 4 of 40 texts of 5-11 tokens, up to 1.8e-7), and with them
trajectories across worker counts.
"""

from __future__ import annotations

import os

from precision_gym.error import ConfigError

__all__ = ["ENV_VAR", "available_cores", "configure_torch_threads", "default_torch_threads"]

#: environment variable read by :func:`default_torch_threads`
ENV_VAR = "PRECISION_GYM_TORCH_THREADS"

_configured: int | None = None  # the count this process was set to (None: not yet)
_explicit = False  # True once a caller chose a count: the default no longer applies


def default_torch_threads() -> int | None:
    """Thread count from ``PRECISION_GYM_TORCH_THREADS`` (default 1; ``auto`` -> None)."""
    raw = os.environ.get(ENV_VAR, "1").strip().lower()
    if raw in ("auto", ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_VAR} must be an integer >= 1 or 'auto', got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{ENV_VAR} must be an integer >= 1 or 'auto', got {value}")
    return value


def configure_torch_threads(num_threads: int | None = None, *, explicit: bool = True) -> int:
    """Set torch's intra-op thread count for this process and return the count in force.

    Args:
        num_threads: threads to use; None reads :func:`default_torch_threads`.
        explicit: a caller's choice (the default) always applies and pins the count; the
            library's own calls pass ``explicit=False`` and then change nothing once a count
            was chosen, so a user's ``configure_torch_threads(4)`` survives env creation.
    """
    global _configured, _explicit
    if num_threads is not None and (isinstance(num_threads, bool) or num_threads < 1):
        raise ConfigError(f"num_threads must be an integer >= 1 or None, got {num_threads!r}")
    import torch

    if not explicit and _explicit:
        return torch.get_num_threads()
    if not explicit and _configured is not None:
        return _configured
    count = num_threads if num_threads is not None else default_torch_threads()
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    _configured = torch.get_num_threads()
    _explicit = _explicit or explicit
    return _configured


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1
