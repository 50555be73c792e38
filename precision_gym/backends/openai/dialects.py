"""What differs between OpenAI-compatible servers: vLLM, llama.cpp and OpenAI proper.

The completions protocol is shared; the servers differ in their ``/tokenize`` payload, in how
top-k log-probs can be keyed (vLLM: by token id), in ``/detokenize`` and so in the scoring
route that works best on each (``scoring="auto"``).
"""

from __future__ import annotations

from typing import Any

from precision_gym.backends.base import Prompt
from precision_gym.error import ConfigError

__all__ = [
    "AUTO_SCORING",
    "SERVERS",
    "detokenizes",
    "stepwise_extras",
    "tokenize_body",
    "top_key",
]

SERVERS = ("vllm", "llamacpp", "openai")
#: the scoring route ``scoring="auto"`` picks per server
AUTO_SCORING = {"vllm": "prompt_logprobs", "llamacpp": "stepwise", "openai": "echo"}


def tokenize_body(
    server: str, model: str, prompt: Prompt, add_special_tokens: bool
) -> dict[str, Any]:
    """The ``/tokenize`` payload for ``prompt`` (text, or chat messages on vLLM)."""
    if server == "llamacpp":
        if not isinstance(prompt, str):
            raise ConfigError("llama.cpp /tokenize takes text only; got chat messages")
        return {"content": prompt, "add_special": add_special_tokens}
    if isinstance(prompt, str):
        return {"model": model, "prompt": prompt, "add_special_tokens": add_special_tokens}
    return {
        "model": model,
        "messages": prompt,
        "add_generation_prompt": True,
        "add_special_tokens": False,
    }


def stepwise_extras(server: str) -> dict[str, Any]:
    """Extra fields of a one-token request whose top-k log-probs should be keyed by id."""
    return {"return_tokens_as_token_ids": True} if server == "vllm" else {}


def detokenizes(server: str) -> bool:
    """Whether the server has ``/detokenize`` (to name the tokens of an id-keyed score)."""
    return server == "vllm"


def top_key(key: str) -> int | str:
    """vLLM's ``return_tokens_as_token_ids`` keys look like ``token_id:123``."""
    if key.startswith("token_id:"):
        try:
            return int(key[len("token_id:") :])
        except ValueError:
            return key
    return key
