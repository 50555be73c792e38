"""Kept for compatibility: the HTTP backend now lives in :mod:`precision_gym.backends.openai`."""

from precision_gym.backends.openai.backend import _SCORING as _SCORING
from precision_gym.backends.openai.backend import MAX_OUTPUT_CHARS, OpenAIBackend
from precision_gym.backends.openai.dialects import SERVERS
from precision_gym.backends.openai.transport import _with_attempts as _with_attempts
from precision_gym.backends.openai.transport import snippet

__all__ = ["MAX_OUTPUT_CHARS", "OpenAIBackend"]

# the former module's private names
_SERVERS = SERVERS
_snippet = snippet
