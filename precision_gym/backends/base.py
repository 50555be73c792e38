"""The contract every precision backend fulfils (simulated, OpenAI-compatible HTTP, transformers).

A *tier* is one precision of the same base model (BF16, W4, W3). The environment asks a
tier's backend to generate the agent's next output for a prompt and, for KL supervision,
to score a given action under a prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ActionDistributionBackend",
    "ActionScore",
    "CallRecord",
    "Generation",
    "GenerationRequest",
    "PrecisionBackend",
    "SamplingParams",
    "StepContext",
]

#: A prompt is either plain text (completion API) or chat messages ({"role", "content"}).
Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one call (the paper: ALFWorld greedy, 100 tokens; WebShop 512)."""

    max_tokens: int = 100
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class StepContext:
    """Structured view of the agent's state, handed to backends alongside the prompt.

    Real LLM backends ignore it (they see only the prompt); simulated backends use it to
    build their action distribution.
    """

    task_name: str
    task_id: str
    task_type: str
    step: int
    actions: tuple[str, ...]
    observations: tuple[str, ...]
    admissible_commands: tuple[str, ...]
    expert_command: Callable[[], str | None]
    step_kind: Callable[[str], str]
    episode_seed: int
    #: the expert's command at each past step, where it was computed (else None)
    past_experts: tuple[str | None, ...] = ()


@dataclass
class GenerationRequest:
    """One prompt to complete.

    ``deadline`` (a :func:`time.monotonic` instant) bounds the call, retries included:
    backends that retry (the HTTP one) cut their timeouts to it and start no attempt after
    it. The env sets it from its per-step ``step_timeout_s``.
    """

    prompt: Prompt
    params: SamplingParams = field(default_factory=SamplingParams)
    context: StepContext | None = None
    deadline: float | None = None


@dataclass
class Generation:
    """One completion: text, token count and the measured wall time of the call."""

    text: str
    completion_tokens: int
    wall_time_s: float
    prompt_tokens: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionScore:
    """Teacher-forced scoring of an action's tokens under a prompt.

    ``logprobs[i]`` is a mapping token -> log-probability at action position ``i``: the full
    vocabulary for in-process backends, the top-k for servers that return only top-k
    (``topk_truncated`` then says so). ``token_ids`` are the action's own tokens.
    """

    tokens: list[str]
    token_logprobs: list[float]
    logprobs: list[dict[str, float]] | None = None
    topk_truncated: bool = False
    full_logprobs: Any = None  # optional [n_tokens, vocab] array (in-process backends)
    #: the action's token ids (when the backend knows them)
    token_ids: list[int] | None = None
    #: per position, token id -> log-prob of the returned top-k (servers; keyed by id, so
    #: distinct tokens that decode to the same text stay distinct)
    topk_ids: list[dict[int, float]] | None = None
    #: backend-specific details (scoring route, prompt token count, wall time, ...)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallRecord:
    """One backend call, as logged for the latency calibrator (``LatencyCalibrator.add_call``).

    ``kind`` is "generate" or "score"; failed calls are logged too (``ok=False``, ``error``)
    with the wall time spent, including retries.
    """

    tier: str
    kind: str
    wall_time_s: float
    completion_tokens: int
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    attempts: int = 1
    ok: bool = True
    error: str | None = None


@runtime_checkable
class PrecisionBackend(Protocol):
    """What the environment needs from one precision tier's model."""

    #: human-readable tier/backend name, e.g. "bf16", "simulated-w4"
    name: str
    #: True for simulated backends: their results are never real-LLM results
    simulated: bool

    # Optional flags (read with getattr, default False):
    #: ``retries_faults``: the backend retries transient faults itself (bounded, honouring
    #: ``GenerationRequest.deadline``); the env then calls it once per step and never
    #: retries its errors (retries live in exactly one layer).
    #: ``needs_expert``: the backend reads ``StepContext.expert_command()`` (simulated
    #: tiers); a batched env then fetches the experts in one batch before generating.
    #: ``concurrent_calls``: ``generate`` may run in several threads at once and its work
    #: runs elsewhere (a server); an agent step then calls all such tiers at once.

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one completion per request; raise BackendError on a backend fault."""
        ...

    def score(self, prompt: Prompt, action: str) -> ActionScore:
        """Teacher-force ``action`` after ``prompt`` and return its per-token log-probs."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ActionDistributionBackend(Protocol):
    """Backends that expose an exact distribution over admissible commands (simulated)."""

    def action_distribution(self, context: StepContext) -> dict[str, float]: ...
