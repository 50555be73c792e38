"""The library's exception hierarchy.

Every error raised on purpose by precision-gym derives from :class:`PrecisionGymError`,
and each message states what was expected and what came instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = [
    "BackendError",
    "CheckpointError",
    "ConfigError",
    "CorruptDataError",
    "DataNotFoundError",
    "InvalidActionError",
    "PrecisionGymError",
    "ResumeConfigError",
    "lookup",
]

V = TypeVar("V")


class PrecisionGymError(Exception):
    """Base class of every error raised by precision-gym."""


class DataNotFoundError(PrecisionGymError, FileNotFoundError):
    """Benchmark data (game files, catalogues, model weights) is missing where it was looked for."""


class CorruptDataError(DataNotFoundError):
    """Benchmark data is there but unusable: a truncated or malformed game file, a catalogue
    of the wrong schema. The message names the file and what was expected."""


class ConfigError(PrecisionGymError, ValueError):
    """An argument or configuration value is out of its allowed range or of the wrong kind."""


class InvalidActionError(PrecisionGymError, ValueError):
    """A router action outside the environment's action space."""


class BackendError(PrecisionGymError, RuntimeError):
    """A fault of an LLM backend: timeout, dropped connection, malformed output.

    Retryable faults are retried in exactly one layer (the backend's own transport when
    it has one, else the env's agent step), bounded in attempts and in time per step; then
    the env ends the episode as failed with the reason in ``info["backend_error"]``; it
    never lets them crash a training loop. ``attempts`` says how many were made, when the
    raiser knows.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, attempts: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = attempts


class CheckpointError(PrecisionGymError):
    """A checkpoint file is missing, truncated or of an unexpected format."""


class ResumeConfigError(CheckpointError, ConfigError):
    """``--resume`` with settings that differ from those the checkpoint was written with;
    the message names each differing field with the checkpoint's value and the new one."""


def lookup(table: Mapping[str, V], name: str, what: str) -> V:
    """``table[name]``, or a :class:`ConfigError` that names ``what`` and the known names."""
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown {what} {name!r}: expected one of {sorted(table)}") from None
