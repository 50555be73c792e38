"""The completions protocol: request payloads and validated generations.

String prompts go to ``/v1/completions``, message lists to ``/v1/chat/completions``. A
response is used only when it has a string text and ``0 <= usage.completion_tokens <=
max_tokens`` (an int); anything else is a retryable malformed-response error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from precision_gym.backends.base import Prompt, SamplingParams
from precision_gym.error import BackendError, ConfigError

__all__ = ["cached_prompt_tokens", "generation_payload", "parse_generation"]

#: ``malformed(path, expected, got)``: the error for a response of the wrong shape
Malformed = Callable[[str, str, Any], BackendError]


def generation_payload(
    model: str, prompt: Prompt, params: SamplingParams
) -> tuple[str, dict[str, Any]]:
    """``(path, body)`` of one generation request."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if isinstance(prompt, str):
        body["prompt"] = prompt
        return "/v1/completions", body
    if isinstance(prompt, list):
        body["messages"] = prompt
        return "/v1/chat/completions", body
    raise ConfigError(f"prompt must be str or a list of messages; got {type(prompt)}")


def parse_generation(
    malformed: Malformed, path: str, data: Any, max_tokens: int | None = None
) -> tuple[str, int, int | None, str | None]:
    """``(text, completion_tokens, prompt_tokens, finish_reason)`` of a response body."""
    chat = path.endswith("chat/completions")
    limit = f"0 <= int <= max_tokens={max_tokens}" if max_tokens is not None else "int >= 0"
    expected = (
        f"a JSON object with choices[0].message.content (str) and usage.completion_tokens ({limit})"
        if chat
        else f"a JSON object with choices[0].text (str) and usage.completion_tokens ({limit})"
    )
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
        usage = data["usage"]
        n_out = usage["completion_tokens"]
    except (KeyError, IndexError, TypeError) as exc:
        raise malformed(path, expected, data) from exc
    if text is None and chat:
        text = ""
    if not isinstance(text, str) or isinstance(n_out, bool) or not isinstance(n_out, int):
        raise malformed(path, expected, data)
    if n_out < 0 or (max_tokens is not None and n_out > max_tokens):
        raise malformed(
            path, expected, f"usage.completion_tokens={n_out} (text of {len(text)} chars)"
        )
    n_in = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(n_in, bool) or not isinstance(n_in, int) or n_in < 0:
        n_in = None
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return text, n_out, n_in, finish if isinstance(finish, str) else None


def cached_prompt_tokens(data: Any) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens`` when the server reports it."""
    details = (
        data.get("usage", {}).get("prompt_tokens_details")
        if isinstance(data.get("usage"), dict)
        else None
    )
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return details["cached_tokens"]
    return None
