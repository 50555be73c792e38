"""Teacher-forced action scoring over HTTP: three routes to the action tokens' log-probs.

* ``"prompt_logprobs"`` (vLLM): tokenize prompt and action with ``/tokenize``, send the
  concatenated token ids with ``max_tokens=1`` and ``prompt_logprobs=k``; the action's
  positions give the top-k log-probs (by token id) and the forced token's own log-prob.
* ``"stepwise"`` (vLLM, llama.cpp, any server returning top-k log-probs of generated
  tokens): one ``max_tokens=1``, ``logprobs=k`` request per action token on the prefix
  ``prompt + action[:i]`` (token ids), all in flight at once. Cheap on long prompts because
  the server's prefix cache applies (vLLM computes ``prompt_logprobs`` over the *whole*
  prompt and skips its prefix cache). The forced token's own log-prob is exact when it is in
  the returned top-k, else bounded by the smallest one (``meta["own_token_outside_topk"]``).
* ``"echo"`` (OpenAI legacy completions, servers without ``prompt_logprobs``): send
  ``prompt + action`` with ``echo=true``, ``logprobs=k`` and ``max_tokens`` 1 (or 0), and
  keep the tokens whose ``text_offset`` lies in the action.

Servers return top-k only (vLLM caps ``k`` at ``--max-logprobs``), so scores carry
``topk_truncated=True`` unless ``score_top_k=-1`` (vLLM's full vocabulary).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from precision_gym.backends.base import ActionScore, Prompt
from precision_gym.backends.openai.dialects import (
    detokenizes,
    stepwise_extras,
    tokenize_body,
    top_key,
)
from precision_gym.backends.openai.transport import RetryingTransport
from precision_gym.error import BackendError, ConfigError

__all__ = ["ROUTES", "ActionScorer", "ScoringSettings"]

ROUTES = ("prompt_logprobs", "stepwise", "echo")
_COMPLETIONS = "/v1/completions"


class ScoringSettings(Protocol):
    """What the scorer reads from its backend at each call."""

    model: str
    server: str
    score_top_k: int
    echo_max_tokens: int


class ActionScorer:
    """Scores actions on one server through ``http`` (the routes of the module docstring)."""

    def __init__(self, http: RetryingTransport, settings: ScoringSettings) -> None:
        self.http = http
        self.settings = settings

    async def score(self, route: str, prompt: Prompt, action: str) -> ActionScore:
        if route == "prompt_logprobs":
            return await self.prompt_logprobs(prompt, action)
        if route == "stepwise":
            return await self.stepwise(prompt, action)
        return await self.echo(prompt, action)

    # ---------------------------------------------------------------- tokens
    async def tokenize(self, prompt: Prompt, add_special_tokens: bool) -> list[int]:
        body = tokenize_body(self.settings.server, self.settings.model, prompt, add_special_tokens)
        data, _ = await self.http.post("/tokenize", body)
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise self.http.malformed("/tokenize", "a JSON object with tokens (list of int)", data)
        return tokens

    async def detokenize(self, token_id: int) -> str:
        try:
            data, _ = await self.http.post(
                "/detokenize", {"model": self.settings.model, "tokens": [token_id]}
            )
            text = data.get("prompt") if isinstance(data, dict) else None
            return text if isinstance(text, str) else f"<id:{token_id}>"
        except BackendError:
            return f"<id:{token_id}>"

    async def _ids(self, prompt: Prompt, action: str) -> tuple[list[int], list[int]]:
        p_ids, a_ids = await asyncio.gather(
            self.tokenize(prompt, True), self.tokenize(action, False)
        )
        return p_ids, a_ids

    # ---------------------------------------------------------------- routes
    async def prompt_logprobs(self, prompt: Prompt, action: str) -> ActionScore:
        p_ids, a_ids = await self._ids(prompt, action)
        if not a_ids:
            return ActionScore(
                [],
                [],
                token_ids=[],
                topk_ids=[],
                logprobs=[],
                topk_truncated=self.settings.score_top_k != -1,
            )
        body = {
            "model": self.settings.model,
            "prompt": p_ids + a_ids,
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": self.settings.score_top_k,
        }
        path = _COMPLETIONS
        data, attempts = await self.http.post(path, body)
        expected = (
            f"choices[0].prompt_logprobs: a list of {len(p_ids) + len(a_ids)} entries "
            "(null or {token_id: {logprob, decoded_token}})"
        )
        try:
            plp = data["choices"][0]["prompt_logprobs"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self.http.malformed(path, expected, data) from exc
        if not isinstance(plp, list) or len(plp) != len(p_ids) + len(a_ids):
            raise self.http.malformed(path, expected, plp)
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
            raise self.http.malformed(path, expected, plp[len(p_ids) :]) from exc
        return ActionScore(
            tokens=tokens,
            token_logprobs=token_lp,
            logprobs=by_text,
            topk_truncated=self.settings.score_top_k != -1,
            token_ids=list(a_ids),
            topk_ids=topk_ids,
            meta={
                "route": "prompt_logprobs",
                "prompt_tokens": len(p_ids),
                "attempts": attempts,
                "top_k": self.settings.score_top_k,
            },
        )

    async def stepwise(self, prompt: Prompt, action: str) -> ActionScore:
        p_ids, a_ids = await self._ids(prompt, action)
        if not a_ids:
            return ActionScore([], [], token_ids=[], topk_ids=[], logprobs=[], topk_truncated=True)
        path = _COMPLETIONS
        k = max(self.settings.score_top_k, 1)
        expected = "choices[0].logprobs.top_logprobs[0]: a mapping token -> logprob"

        async def next_token(i: int) -> tuple[dict[int | str, float], int]:
            body: dict[str, Any] = {
                "model": self.settings.model,
                "prompt": p_ids + a_ids[:i],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": k,
                **stepwise_extras(self.settings.server),
            }
            data, attempts = await self.http.post(path, body)
            try:
                top = data["choices"][0]["logprobs"]["top_logprobs"][0]
                return {top_key(str(t)): float(v) for t, v in top.items()}, attempts
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise self.http.malformed(path, expected, data) from exc

        steps = await asyncio.gather(*(next_token(i) for i in range(len(a_ids))))
        by_id = all(isinstance(t, int) for top, _ in steps for t in top)
        if by_id and detokenizes(self.settings.server):
            tokens = list(await asyncio.gather(*(self.detokenize(t) for t in a_ids)))
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

    async def echo(self, prompt: Prompt, action: str) -> ActionScore:
        if not isinstance(prompt, str):
            raise ConfigError(
                "echo scoring needs a text prompt; got chat messages "
                "(use scoring='prompt_logprobs' with vLLM)"
            )
        full = prompt + action
        body = {
            "model": self.settings.model,
            "prompt": full,
            "max_tokens": self.settings.echo_max_tokens,
            "temperature": 0.0,
            "echo": True,
            "logprobs": max(self.settings.score_top_k, 1),
        }
        path = _COMPLETIONS
        data, attempts = await self.http.post(path, body)
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
            raise self.http.malformed(path, expected, data) from exc
        start, end = len(prompt), len(full)
        keep = [i for i, o in enumerate(off) if start <= o < end]
        merged = any(o < start < o + len(toks[i]) for i, o in enumerate(off))
        if action and not keep:
            raise self.http.malformed(path, f"tokens with text_offset in [{start}, {end})", off)
        try:
            tokens = [str(toks[i]) for i in keep]
            token_lp = [float(tlp[i]) for i in keep]
            by_text = [{str(k): float(v) for k, v in (top[i] or {}).items()} for i in keep]
        except (TypeError, ValueError, AttributeError) as exc:
            raise self.http.malformed(path, expected, data) from exc
        return ActionScore(
            tokens=tokens,
            token_logprobs=token_lp,
            logprobs=by_text,
            topk_truncated=True,
            meta={
                "route": "echo",
                "attempts": attempts,
                "boundary_token_merged": merged,
                "top_k": self.settings.score_top_k,
            },
        )
