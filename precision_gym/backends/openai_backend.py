"""A precision tier served by an OpenAI-compatible HTTP server (vLLM first; llama.cpp too).

:class:`OpenAIBackend` talks to ``/v1/completions`` (string prompts) and
``/v1/chat/completions`` (message lists) with an ``httpx.AsyncClient`` that lives on a
private event-loop thread, so that

* a batch handed to :meth:`OpenAIBackend.generate` goes out concurrently (the server batches
  them; ``max_concurrency`` bounds the requests in flight), and several threads (one per
  env) may call it at once;
* connections are pooled and reused across calls;
* each request has a timeout, and timeouts, dropped connections and HTTP 5xx/429 are retried
  ``max_retries`` times with exponential backoff before a :class:`~precision_gym.error.BackendError`
  says what was expected and what came; HTTP 4xx and malformed bodies fail at once.

Every call is logged in :attr:`OpenAIBackend.call_log` (:class:`~precision_gym.backends.base.CallRecord`:
wall time, completion tokens, attempts) for the latency calibrator.

Scoring (:meth:`OpenAIBackend.score`) teacher-forces an action:

* ``scoring="prompt_logprobs"`` (vLLM): tokenize prompt and action with ``/tokenize``, send the
  concatenated token ids with ``max_tokens=1`` and ``prompt_logprobs=k``; the action's
  positions give the top-k log-probs (by token id) and the forced token's own log-prob.
* ``scoring="stepwise"`` (vLLM, llama.cpp, any server returning top-k log-probs of generated
  tokens): one ``max_tokens=1``, ``logprobs=k`` request per action token on the prefix
  ``prompt + action[:i]`` (token ids), all in flight at once. Cheap on long prompts because
  the server's prefix cache applies (vLLM computes ``prompt_logprobs`` over the *whole*
  prompt and skips its prefix cache). The forced token's own log-prob is exact when it is in
  the returned top-k, else bounded by the smallest one (``meta["own_token_outside_topk"]``).
* ``scoring="echo"`` (OpenAI legacy completions, servers without ``prompt_logprobs``): send
  ``prompt + action`` with ``echo=true``, ``logprobs=k`` and ``max_tokens`` 1 (or 0), and keep
  the tokens whose ``text_offset`` lies in the action.

Servers return top-k only (vLLM caps ``k`` at ``--max-logprobs``), so scores carry
``topk_truncated=True`` unless ``score_top_k=-1`` (vLLM's full vocabulary, which needs
``--max-logprobs -1`` on the server).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
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
    SamplingParams,
)
from precision_gym.error import BackendError, ConfigError

__all__ = ["MAX_OUTPUT_CHARS", "OpenAIBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCORING = ("auto", "prompt_logprobs", "stepwise", "echo")
#: default cap on a generation's text (characters): ALFWorld actions are one short line and
#: WebShop's 512-token replies are a few KB, so 16 KiB cuts only runaway outputs
MAX_OUTPUT_CHARS = 16_384
_SERVERS = ("vllm", "llamacpp", "openai")


def _with_attempts(exc: BackendError, attempts: int) -> BackendError:
    """Tag an error with the number of HTTP requests really sent (for ``call_log``)."""
    exc.attempts = attempts
    return exc


def _snippet(x: Any, n: int = 300) -> str:
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


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
        if server not in _SERVERS:
            raise ConfigError(f"server must be one of {_SERVERS}; got {server!r}")
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
        self.scoring = (
            {"vllm": "prompt_logprobs", "llamacpp": "stepwise", "openai": "echo"}[server]
            if scoring == "auto"
            else scoring
        )
        self.echo_max_tokens = int(echo_max_tokens)
        self.max_output_chars = max_output_chars
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._transport = transport
        #: one record per HTTP-level call (generate or score), failed ones included
        self.call_log: list[CallRecord] = []
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"OpenAIBackend[{self.name}]", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ plumbing
    @property
    def _deadline_s(self) -> float:
        """Upper bound on one request including retries and backoff (no call hangs longer)."""
        per = self.timeout_s + self.connect_timeout_s
        backoff = sum(
            min(self.backoff_max_s, self.backoff_s * 2**a) for a in range(self.max_retries)
        )
        return (self.max_retries + 1) * per + backoff + 10.0

    def _run(
        self, coro: Coroutine[Any, Any, T], n_requests: int = 1, deadline: float | None = None
    ) -> T:
        if self._closed:
            coro.close()
            raise BackendError(f"{self.name}: backend is closed", retryable=False)
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("OpenAIBackend methods must not be called from its own loop")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        waves = max(1, -(-n_requests // self.max_concurrency))
        wait = self._deadline_s * waves
        if deadline is not None:  # the requests stop themselves then; 1 s to report it
            wait = min(wait, max(0.0, deadline - time.monotonic()) + 1.0)
        try:
            return fut.result(timeout=wait)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise BackendError(
                f"{self.name}: expected an answer within {wait:.0f} s "
                f"(timeouts and retries included); got none"
            ) from exc

    def submit(
        self, requests: Sequence[GenerationRequest]
    ) -> concurrent.futures.Future[list[Generation]]:
        """Non-blocking :meth:`generate`: a future of the generations (raises BackendError)."""
        return asyncio.run_coroutine_threadsafe(self.agenerate(requests), self._loop)

    async def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
                limits=httpx.Limits(
                    max_connections=self.max_concurrency,
                    max_keepalive_connections=self.max_concurrency,
                ),
                headers=self._headers,
                transport=self._transport,
            )
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._client

    async def _post(
        self, path: str, payload: dict[str, Any], deadline: float | None = None
    ) -> tuple[Any, int]:
        """POST JSON with bounded retries; returns ``(json, attempts)``.

        ``deadline`` (a ``time.monotonic()`` instant) bounds all attempts together: each
        attempt's timeouts are cut to the time left and no attempt or backoff starts after it.
        """
        client = await self._get_client()
        assert self._sem is not None
        url = f"{self.base_url}{path}"
        last = "nothing"
        attempts = 0
        late = ""
        for attempt in range(self.max_retries + 1):
            attempts = attempt + 1
            timeout = self.timeout_s
            request_timeout: httpx.Timeout | None = None
            if deadline is not None:
                left = deadline - time.monotonic()
                timeout = max(0.001, min(self.timeout_s, left))
                request_timeout = httpx.Timeout(
                    timeout, connect=max(0.001, min(self.connect_timeout_s, left))
                )
            try:
                async with self._sem:
                    if request_timeout is None:
                        resp = await client.post(url, json=payload)
                    else:
                        resp = await asyncio.wait_for(
                            client.post(url, json=payload, timeout=request_timeout),
                            max(0.001, deadline - time.monotonic()),  # type: ignore[operator]
                        )
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                last = f"a timeout ({type(exc).__name__}, timeout {timeout:g} s)"
            except httpx.TransportError as exc:
                last = f"a connection error ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json(), attempts
                    except ValueError:
                        raise _with_attempts(
                            BackendError(
                                f"{self.name}: malformed response from POST {url}: expected a "
                                f"JSON body; got {_snippet(resp.text)!r}"
                            ),
                            attempts,
                        ) from None
                body = _snippet(resp.text)
                if resp.status_code >= 500 or resp.status_code == 429:
                    last = f"HTTP {resp.status_code}: {body}"
                else:
                    raise _with_attempts(
                        BackendError(
                            f"{self.name}: POST {url}: expected HTTP 200; got HTTP "
                            f"{resp.status_code}: {body}",
                            retryable=False,
                        ),
                        attempts,
                    )
            if attempt < self.max_retries:
                delay = min(self.backoff_max_s, self.backoff_s * 2**attempt)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    late = " before the step deadline"
                    break
                log.warning(
                    "%s: POST %s attempt %d failed (%s); retrying in %.2f s",
                    self.name,
                    url,
                    attempts,
                    last,
                    delay,
                )
                await asyncio.sleep(delay)
        raise BackendError(
            f"{self.name}: POST {url} failed after {attempts} attempts{late}: expected HTTP "
            f"200 with a JSON body; got {last}",
            attempts=attempts,
        )

    def _malformed(self, path: str, expected: str, got: Any) -> BackendError:
        return BackendError(
            f"{self.name}: malformed response from POST {self.base_url}{path}: expected "
            f"{expected}; got {_snippet(got)}"
        )

    # ------------------------------------------------------------------ generation
    def _payload(self, prompt: Prompt, params: SamplingParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.model,
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

    def _parse_generation(
        self, path: str, data: Any, max_tokens: int | None = None
    ) -> tuple[str, int, int | None, str | None]:
        chat = path.endswith("chat/completions")
        limit = f"0 <= int <= max_tokens={max_tokens}" if max_tokens is not None else "int >= 0"
        expected = (
            f"a JSON object with choices[0].message.content (str) and "
            f"usage.completion_tokens ({limit})"
            if chat
            else f"a JSON object with choices[0].text (str) and usage.completion_tokens ({limit})"
        )
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            usage = data["usage"]
            n_out = usage["completion_tokens"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self._malformed(path, expected, data) from exc
        if text is None and chat:
            text = ""
        if not isinstance(text, str) or isinstance(n_out, bool) or not isinstance(n_out, int):
            raise self._malformed(path, expected, data)
        if n_out < 0 or (max_tokens is not None and n_out > max_tokens):
            raise self._malformed(
                path, expected, f"usage.completion_tokens={n_out} (text of {len(text)} chars)"
            )
        n_in = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(n_in, bool) or not isinstance(n_in, int) or n_in < 0:
            n_in = None
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        return text, n_out, n_in, finish if isinstance(finish, str) else None

    async def _generate_one(self, request: GenerationRequest) -> Generation:
        path, body = self._payload(request.prompt, request.params)
        t0 = time.perf_counter()
        attempts = 1
        try:
            data, attempts = await self._post(path, body, request.deadline)
            text, n_out, n_in, finish = self._parse_generation(
                path, data, request.params.max_tokens
            )
        except BackendError as exc:
            self.call_log.append(
                CallRecord(
                    self.name,
                    "generate",
                    time.perf_counter() - t0,
                    0,
                    ok=False,
                    error=_snippet(str(exc), 1000),
                    attempts=exc.attempts or attempts,  # requests really sent
                )
            )
            raise
        n_chars = len(text)
        if n_chars > self.max_output_chars:  # a runaway output: keep a bounded prefix
            text = text[: self.max_output_chars]
        wall = time.perf_counter() - t0
        cached = None
        details = (
            data.get("usage", {}).get("prompt_tokens_details")
            if isinstance(data.get("usage"), dict)
            else None
        )
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            cached = details["cached_tokens"]
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
    async def _tokenize(self, prompt: Prompt, add_special_tokens: bool) -> list[int]:
        if self.server == "llamacpp":
            if not isinstance(prompt, str):
                raise ConfigError("llama.cpp /tokenize takes text only; got chat messages")
            body: dict[str, Any] = {"content": prompt, "add_special": add_special_tokens}
        elif isinstance(prompt, str):
            body = {"model": self.model, "prompt": prompt, "add_special_tokens": add_special_tokens}
        else:
            body = {
                "model": self.model,
                "messages": prompt,
                "add_generation_prompt": True,
                "add_special_tokens": False,
            }
        data, _ = await self._post("/tokenize", body)
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise self._malformed("/tokenize", "a JSON object with tokens (list of int)", data)
        return tokens

    async def _score_prompt_logprobs(self, prompt: Prompt, action: str) -> ActionScore:
        p_ids, a_ids = await asyncio.gather(
            self._tokenize(prompt, True), self._tokenize(action, False)
        )
        if not a_ids:
            return ActionScore(
                [],
                [],
                token_ids=[],
                topk_ids=[],
                logprobs=[],
                topk_truncated=self.score_top_k != -1,
            )
        body = {
            "model": self.model,
            "prompt": p_ids + a_ids,
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": self.score_top_k,
        }
        path = "/v1/completions"
        data, attempts = await self._post(path, body)
        expected = (
            f"choices[0].prompt_logprobs: a list of {len(p_ids) + len(a_ids)} entries "
            "(null or {token_id: {logprob, decoded_token}})"
        )
        try:
            plp = data["choices"][0]["prompt_logprobs"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self._malformed(path, expected, data) from exc
        if not isinstance(plp, list) or len(plp) != len(p_ids) + len(a_ids):
            raise self._malformed(path, expected, plp)
        tokens, token_lp, topk_ids, by_text = [], [], [], []
        try:
            for i, tid in enumerate(a_ids):
                entry = plp[len(p_ids) + i]
                ids = {int(k): float(v["logprob"]) for k, v in entry.items()}
                own = entry[str(tid)]
                texts: dict[str, float] = {}
                for k, v in entry.items():
                    t = v.get("decoded_token") or f"<id:{k}>"
                    texts[t] = max(texts.get(t, float("-inf")), float(v["logprob"]))
                tokens.append(own.get("decoded_token") or f"<id:{tid}>")
                token_lp.append(float(own["logprob"]))
                topk_ids.append(ids)
                by_text.append(texts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._malformed(path, expected, plp[len(p_ids) :]) from exc
        return ActionScore(
            tokens=tokens,
            token_logprobs=token_lp,
            logprobs=by_text,
            topk_truncated=self.score_top_k != -1,
            token_ids=list(a_ids),
            topk_ids=topk_ids,
            meta={
                "route": "prompt_logprobs",
                "prompt_tokens": len(p_ids),
                "attempts": attempts,
                "top_k": self.score_top_k,
            },
        )

    @staticmethod
    def _top_key(key: str) -> int | str:
        """vLLM's ``return_tokens_as_token_ids`` keys look like ``token_id:123``."""
        if key.startswith("token_id:"):
            try:
                return int(key[len("token_id:") :])
            except ValueError:
                return key
        return key

    async def _detokenize(self, token_id: int) -> str:
        try:
            data, _ = await self._post("/detokenize", {"model": self.model, "tokens": [token_id]})
            text = data.get("prompt") if isinstance(data, dict) else None
            return text if isinstance(text, str) else f"<id:{token_id}>"
        except BackendError:
            return f"<id:{token_id}>"

    async def _score_stepwise(self, prompt: Prompt, action: str) -> ActionScore:
        p_ids, a_ids = await asyncio.gather(
            self._tokenize(prompt, True), self._tokenize(action, False)
        )
        if not a_ids:
            return ActionScore([], [], token_ids=[], topk_ids=[], logprobs=[], topk_truncated=True)
        path = "/v1/completions"
        k = max(self.score_top_k, 1)
        expected = "choices[0].logprobs.top_logprobs[0]: a mapping token -> logprob"

        async def next_token(i: int) -> tuple[dict[int | str, float], int]:
            body: dict[str, Any] = {
                "model": self.model,
                "prompt": p_ids + a_ids[:i],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": k,
            }
            if self.server == "vllm":
                body["return_tokens_as_token_ids"] = True
            data, attempts = await self._post(path, body)
            try:
                top = data["choices"][0]["logprobs"]["top_logprobs"][0]
                return {self._top_key(str(t)): float(v) for t, v in top.items()}, attempts
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise self._malformed(path, expected, data) from exc

        steps = await asyncio.gather(*(next_token(i) for i in range(len(a_ids))))
        by_id = all(isinstance(t, int) for top, _ in steps for t in top)
        if by_id and self.server == "vllm":
            tokens = list(await asyncio.gather(*(self._detokenize(t) for t in a_ids)))
        else:
            tokens = [f"<id:{t}>" for t in a_ids]
        token_lp, outside = [], []
        for i, (top, _) in enumerate(steps):
            own = top.get(a_ids[i]) if by_id else None
            if own is None:
                own = min(top.values()) if top else float("-inf")
                outside.append(i)
            token_lp.append(own)
        return ActionScore(
            tokens=tokens,
            token_logprobs=token_lp,
            logprobs=[{str(t): v for t, v in top.items()} for top, _ in steps],
            topk_truncated=True,
            token_ids=list(a_ids),
            topk_ids=[dict(top) for top, _ in steps] if by_id else None,  # type: ignore[misc]
            meta={
                "route": "stepwise",
                "prompt_tokens": len(p_ids),
                "top_k": k,
                "attempts": max(a for _, a in steps),
                # positions whose forced token fell outside the top-k: its log-prob is
                # only bounded above by the smallest returned one
                "own_token_outside_topk": outside,
            },
        )

    async def _score_echo(self, prompt: Prompt, action: str) -> ActionScore:
        if not isinstance(prompt, str):
            raise ConfigError(
                "echo scoring needs a text prompt; got chat messages "
                "(use scoring='prompt_logprobs' with vLLM)"
            )
        full = prompt + action
        body = {
            "model": self.model,
            "prompt": full,
            "max_tokens": self.echo_max_tokens,
            "temperature": 0.0,
            "echo": True,
            "logprobs": max(self.score_top_k, 1),
        }
        path = "/v1/completions"
        data, attempts = await self._post(path, body)
        expected = (
            "choices[0].logprobs with tokens, token_logprobs, top_logprobs and "
            "text_offset lists of equal length"
        )
        try:
            lp = data["choices"][0]["logprobs"]
            toks, tlp, top, off = (
                lp["tokens"],
                lp["token_logprobs"],
                lp["top_logprobs"],
                lp["text_offset"],
            )
            if not (len(toks) == len(tlp) == len(top) == len(off)):
                raise ValueError("length mismatch")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._malformed(path, expected, data) from exc
        start, end = len(prompt), len(full)
        keep = [i for i, o in enumerate(off) if start <= o < end]
        merged = any(o < start < o + len(toks[i]) for i, o in enumerate(off))
        if action and not keep:
            raise self._malformed(path, f"tokens with text_offset in [{start}, {end})", off)
        try:
            tokens = [str(toks[i]) for i in keep]
            token_lp = [float(tlp[i]) for i in keep]
            by_text = [{str(k): float(v) for k, v in (top[i] or {}).items()} for i in keep]
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._malformed(path, expected, data) from exc
        return ActionScore(
            tokens=tokens,
            token_logprobs=token_lp,
            logprobs=by_text,
            topk_truncated=True,
            meta={
                "route": "echo",
                "attempts": attempts,
                "boundary_token_merged": merged,
                "top_k": self.score_top_k,
            },
        )

    async def ascore(self, prompt: Prompt, action: str) -> ActionScore:
        t0 = time.perf_counter()
        try:
            if self.scoring == "prompt_logprobs":
                result = await self._score_prompt_logprobs(prompt, action)
            elif self.scoring == "stepwise":
                result = await self._score_stepwise(prompt, action)
            else:
                result = await self._score_echo(prompt, action)
        except BackendError as exc:
            self.call_log.append(
                CallRecord(
                    self.name,
                    "score",
                    time.perf_counter() - t0,
                    0,
                    ok=False,
                    error=_snippet(str(exc), 1000),
                    attempts=exc.attempts or 1,
                )
            )
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

        async def probe() -> bool:
            client = await self._get_client()
            try:
                return (await client.get(f"{self.base_url}/health")).status_code == 200
            except httpx.HTTPError:
                return False

        return self._run(probe())

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the connection pool and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            if self._client is not None:
                await self._client.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        except Exception:
            log.debug("%s: client close failed", self.name, exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            if not self._closed and self._loop.is_running():
                self._loop.call_soon_threadsafe(self._loop.stop)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_url!r}, model={self.model!r}, name={self.name!r})"
