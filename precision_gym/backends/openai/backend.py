""":class:`OpenAIBackend`: one precision tier behind an OpenAI-compatible HTTP server.

The backend ties the parts together: a private event loop (:mod:`.loop`), the retrying
HTTP transport (:mod:`.transport`, the one retry layer for this backend), the completions
protocol (:mod:`.completions`), the scoring routes (:mod:`.scoring`) and the server dialects
(:mod:`.dialects`). Every call is logged in :attr:`OpenAIBackend.call_log`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import httpx

from precision_gym.backends.base import (
    ActionScore,
    CallRecord,
    Generation,
    GenerationRequest,
    Prompt,
)
from precision_gym.backends.openai.completions import (
    cached_prompt_tokens,
    generation_payload,
    parse_generation,
)
from precision_gym.backends.openai.dialects import AUTO_SCORING, SERVERS
from precision_gym.backends.openai.loop import LoopThread
from precision_gym.backends.openai.scoring import ROUTES, ActionScorer
from precision_gym.backends.openai.transport import RetryingTransport, snippet
from precision_gym.error import BackendError, ConfigError

__all__ = ["MAX_OUTPUT_CHARS", "OpenAIBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCORING = ("auto", *ROUTES)
#: default cap on a generation's text (characters): ALFWorld actions are one short line and
#: WebShop's 512-token replies are a few KB, so 16 KiB cuts only runaway outputs
MAX_OUTPUT_CHARS = 16_384


class OpenAIBackend:
    """One precision tier behind an OpenAI-compatible server.

    Parameters
    ----------
    base_url:
        Server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
    model:
        The served model name (``--served-model-name`` / the path given to ``--model``).
    name:
        Tier name for logs and :class:`CallRecord` (default: ``model``).
    timeout_s, connect_timeout_s:
        Per-request read/write and connect timeouts.
    max_retries, backoff_s, backoff_max_s:
        Retries after the first attempt for retryable faults, sleeping
        ``min(backoff_max_s, backoff_s * 2**attempt)`` in between.
    max_concurrency:
        Requests in flight at once (and the connection-pool size).
    score_top_k:
        ``k`` of the top-k log-probs asked for when scoring (``-1``: full vocabulary, vLLM).
    scoring:
        ``"prompt_logprobs"``, ``"stepwise"``, ``"echo"`` or ``"auto"`` (prompt_logprobs for
        vLLM, stepwise for llama.cpp, echo for other servers).
    server:
        ``"vllm"``, ``"llamacpp"`` or ``"openai"``: selects the tokenize payload and the
        ``auto`` scoring route.
    max_output_chars:
        Longest generated text kept (default :data:`MAX_OUTPUT_CHARS`); a longer one is cut
        there (``meta["output_chars"]`` keeps the length that came), so a runaway output is
        never stored, logged or re-sent in later prompts whole.
    transport:
        An ``httpx`` transport to use instead of the network (tests).

    Responses are validated before anything uses them: a generation needs a string text and
    ``0 <= usage.completion_tokens <= max_tokens`` (an int); anything else is a retryable
    :class:`~precision_gym.error.BackendError`, so a bad response ends as
    ``info["backend_error"]``, never as a command executed in the game.
    """

    simulated = False
    #: transient faults are retried here, per request, within ``GenerationRequest.deadline``:
    #: the env calls this backend once per step and never retries its errors
    retries_faults = True
    #: thread-safe, and the work runs on the server: a batched env sends every tier's batch
    #: at once (see :meth:`~precision_gym.envs.agent_step.AgentStepper.generate_groups`)
    concurrent_calls = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        name: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_concurrency: int = 64,
        score_top_k: int = 20,
        scoring: str = "auto",
        server: str = "vllm",
        echo_max_tokens: int = 1,
        headers: dict[str, str] | None = None,
        max_output_chars: int = MAX_OUTPUT_CHARS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if scoring not in _SCORING:
            raise ConfigError(f"scoring must be one of {_SCORING}; got {scoring!r}")
        if server not in SERVERS:
            raise ConfigError(f"server must be one of {SERVERS}; got {server!r}")
        if max_retries < 0 or max_concurrency < 1 or timeout_s <= 0:
            raise ConfigError(
                "expected max_retries >= 0, max_concurrency >= 1 and timeout_s > 0; got "
                f"{max_retries}, {max_concurrency}, {timeout_s}"
            )
        if isinstance(max_output_chars, bool) or not (
            isinstance(max_output_chars, int) and max_output_chars >= 1
        ):
            raise ConfigError(f"max_output_chars must be an int >= 1; got {max_output_chars!r}")
        if score_top_k == 0 or score_top_k < -1:
            raise ConfigError(f"score_top_k must be >= 1 or -1 (full); got {score_top_k}")
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.base_url = root
        self.model = model
        self.name = name or model
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_concurrency = int(max_concurrency)
        self.score_top_k = int(score_top_k)
        self.server = server
        self.scoring = AUTO_SCORING[server] if scoring == "auto" else scoring
        self.echo_max_tokens = int(echo_max_tokens)
        self.max_output_chars = max_output_chars
        headers = dict(headers or {})
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = RetryingTransport(self, headers, transport)
        self._scorer = ActionScorer(self._http, self)
        #: one record per HTTP-level call (generate or score), failed ones included
        self.call_log: list[CallRecord] = []
        self._closed = False
        self._loop = LoopThread(f"OpenAIBackend[{self.name}]")

    # ------------------------------------------------------------------ plumbing
    def _run(
        self, coro: Coroutine[Any, Any, T], n_requests: int = 1, deadline: float | None = None
    ) -> T:
        if self._closed:
            coro.close()
            raise BackendError(f"{self.name}: backend is closed", retryable=False)
        if self._loop.in_loop_thread():
            coro.close()
            raise RuntimeError("OpenAIBackend methods must not be called from its own loop")
        waves = max(1, -(-n_requests // self.max_concurrency))
        wait = self._http.deadline_s * waves
        if deadline is not None:  # the requests stop themselves then; 1 s to report it
            wait = min(wait, max(0.0, deadline - time.monotonic()) + 1.0)
        return self._loop.run(
            coro,
            wait,
            lambda: BackendError(
                f"{self.name}: expected an answer within {wait:.0f} s "
                f"(timeouts and retries included); got none"
            ),
        )

    def submit(
        self, requests: Sequence[GenerationRequest]
    ) -> concurrent.futures.Future[list[Generation]]:
        """Non-blocking :meth:`generate`: a future of the generations (raises BackendError)."""
        return self._loop.submit(self.agenerate(requests))

    def _log_failure(self, kind: str, t0: float, exc: BackendError, attempts: int) -> None:
        """Log a failed call (``attempts``: requests really sent, when the error does not
        say)."""
        self.call_log.append(
            CallRecord(
                self.name,
                kind,
                time.perf_counter() - t0,
                0,
                ok=False,
                error=snippet(str(exc), 1000),
                attempts=exc.attempts or attempts,
            )
        )

    # ------------------------------------------------------------------ generation
    async def _generate_one(self, request: GenerationRequest) -> Generation:
        path, body = generation_payload(self.model, request.prompt, request.params)
        t0 = time.perf_counter()
        attempts = 1
        try:
            data, attempts = await self._http.post(path, body, request.deadline)
            text, n_out, n_in, finish = parse_generation(
                self._http.malformed, path, data, request.params.max_tokens
            )
        except BackendError as exc:
            self._log_failure("generate", t0, exc, attempts)
            raise
        n_chars = len(text)
        if n_chars > self.max_output_chars:  # a runaway output: keep a bounded prefix
            text = text[: self.max_output_chars]
        wall = time.perf_counter() - t0
        cached = cached_prompt_tokens(data)
        self.call_log.append(
            CallRecord(self.name, "generate", wall, n_out, n_in, cached, attempts=attempts)
        )
        return Generation(
            text=text,
            completion_tokens=n_out,
            wall_time_s=wall,
            prompt_tokens=n_in,
            meta={
                "finish_reason": finish,
                "attempts": attempts,
                "backend": self.name,
                **({"output_chars": n_chars} if n_chars > self.max_output_chars else {}),
            },
        )

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Coroutine of :meth:`generate`; must run on this backend's loop (use :meth:`submit`
        from other loops/threads)."""
        results = await asyncio.gather(
            *(self._generate_one(r) for r in requests), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            if len(errors) > 1:
                log.warning("%s: %d of %d requests failed", self.name, len(errors), len(results))
            first = errors[0]
            if isinstance(first, BackendError):
                raise first
            raise BackendError(f"{self.name}: unexpected failure: {first!r}") from first
        return list(results)  # type: ignore[arg-type]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Send all requests concurrently and return their generations in order; raise
        :class:`BackendError` (the first one) if any request failed after its retries."""
        if not requests:
            return []
        deadlines = [r.deadline for r in requests if r.deadline is not None]
        return self._run(
            self.agenerate(requests), len(requests), max(deadlines) if deadlines else None
        )

    # ------------------------------------------------------------------ scoring
    async def ascore(self, prompt: Prompt, action: str) -> ActionScore:
        t0 = time.perf_counter()
        try:
            result = await self._scorer.score(self.scoring, prompt, action)
        except BackendError as exc:
            self._log_failure("score", t0, exc, 1)
            raise
        wall = time.perf_counter() - t0
        result.meta["wall_time_s"] = wall
        self.call_log.append(
            CallRecord(
                self.name,
                "score",
                wall,
                0,
                result.meta.get("prompt_tokens"),
                attempts=result.meta.get("attempts", 1),
            )
        )
        return result

    def score(self, prompt: Prompt, action: str) -> ActionScore:
        """Teacher-force ``action`` after ``prompt`` on the server; top-k log-probs per action
        token (``topk_truncated`` says when they are truncated)."""
        return self._run(self.ascore(prompt, action), 64)

    def health(self) -> bool:
        """Whether ``GET /health`` answers 200 (no retries)."""
        return self._run(self._http.healthy())

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the connection pool and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._loop.close(self._http.aclose())

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            if not self._closed:
                self._loop.stop_soon()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_url!r}, model={self.model!r}, name={self.name!r})"
