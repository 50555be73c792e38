"""A precision tier served by an OpenAI-compatible HTTP server (vLLM first; llama.cpp too).

One module per concept: :mod:`.loop` (the private event-loop thread), :mod:`.transport`
(pooled HTTP with bounded retries: the backend's one retry layer), :mod:`.completions` (the
request/response protocol), :mod:`.scoring` (the three scoring routes), :mod:`.dialects`
(what differs between servers) and :mod:`.backend` (:class:`OpenAIBackend`).

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

Scoring (:meth:`OpenAIBackend.score`) teacher-forces an action by one of three routes,
``scoring="prompt_logprobs"`` (vLLM), ``"stepwise"`` (any server returning top-k log-probs
of generated tokens; uses the prefix cache) or ``"echo"`` (legacy completions): see
:mod:`precision_gym.backends.openai.scoring`. Servers return top-k only, so scores carry
``topk_truncated=True`` unless ``score_top_k=-1`` (vLLM's full vocabulary, which needs
``--max-logprobs -1`` on the server).
"""

from precision_gym.backends.openai.backend import MAX_OUTPUT_CHARS, OpenAIBackend

__all__ = ["MAX_OUTPUT_CHARS", "OpenAIBackend"]
