"""Action-level KL divergence between precision tiers.

``KL(p_high || p_low)`` is measured on the *action* only (thinking tokens get no KL). For
simulated backends the action distributions are exact categoricals over admissible
commands; for real LLM backends the high tier's action tokens are teacher-forced and
the per-token KLs are summed over the action block.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from precision_gym.backends.base import ActionScore, PrecisionBackend, Prompt
from precision_gym.error import ConfigError

__all__ = [
    "ActionKL",
    "action_kl_from_scores",
    "action_token_kl",
    "action_token_kl_report",
    "categorical_kl",
    "token_kl_from_logprobs",
]


def categorical_kl(p: Mapping[str, float], q: Mapping[str, float], eps: float = 1e-12) -> float:
    """``KL(p || q) = sum_a p(a) log(p(a) / q(a))`` over the support of ``p``.

    Both mappings must be distributions (non-negative, summing to 1 within 1e-6);
    ``q(a)`` is floored at ``eps`` so a zero where ``p`` has mass gives a large finite value.
    """
    for name, dist in (("p", p), ("q", q)):
        total = sum(dist.values())
        if any(v < 0 for v in dist.values()) or abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"{name} must be a probability distribution (non-negative, summing to 1); "
                f"got total {total:.6f}"
            )
    kl = 0.0
    for a, pa in p.items():
        if pa > 0.0:
            kl += pa * (math.log(pa) - math.log(max(q.get(a, 0.0), eps)))
    return max(kl, 0.0)


# ----------------------------------------------------------------------------- action-token KL

_TOPK_ROUTE = "topk-union"
_FULL_ROUTE = "full-vocab"


def _full_token_kl(p_lp: Any, q_lp: Any) -> float:
    p = np.asarray(p_lp, dtype=np.float64)
    q = np.asarray(q_lp, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ConfigError(
            f"full-vocabulary log-probs must be 1-D arrays of equal length; "
            f"got shapes {p.shape} and {q.shape}"
        )
    # renormalise in log space (guards against float32 log-softmax drift)
    p = p - np.logaddexp.reduce(p)
    q = q - np.logaddexp.reduce(q)
    pp = np.exp(p)
    mask = pp > 0
    return float(max(np.sum(pp[mask] * (p[mask] - q[mask])), 0.0))


def _complete_side(side: Mapping[Hashable, float], union: set[Hashable]) -> dict[Hashable, float]:
    """Probabilities of one side on ``union`` + the rest bucket (key ``_REST``).

    Keys the side returned keep their probability; each union key it did not return gets
    ``min(min returned prob, remainder / (n_missing + 1))`` (it is outside the side's top-k,
    so at most the smallest returned probability), and what is left of the remainder
    becomes the rest bucket.
    """
    probs = {k: math.exp(v) for k, v in side.items()}
    total = sum(probs.values())
    remainder = max(0.0, 1.0 - total)
    missing = [k for k in union if k not in probs]
    out: dict[Hashable, float] = {k: probs[k] for k in union if k in probs}
    if missing:
        cap = min(probs.values()) if probs else remainder
        share = min(cap, remainder / (len(missing) + 1))
        for k in missing:
            out[k] = share
        remainder -= share * len(missing)
    out[_REST] = max(remainder, 0.0)
    return out


class _Rest:
    def __repr__(self) -> str:
        return "<rest>"


_REST = _Rest()


def token_kl_from_logprobs(
    p_logprobs: Mapping[Hashable, float] | Sequence[float] | Any,
    q_logprobs: Mapping[Hashable, float] | Sequence[float] | Any,
    eps: float = 1e-12,
) -> float:
    """``KL(p || q)`` at one token position from log-probabilities (natural log).

    * Full vocabulary: two equal-length 1-D arrays/sequences of log-probs -> the exact KL.
    * Top-k: two mappings token -> log-prob (servers that return only the top-k). The KL is
      taken over the union ``U`` of both key sets plus one *rest* bucket: a key a side did not
      return gets ``min(that side's smallest returned prob, remainder / (n_missing + 1))``
      and the side's remaining mass goes to the bucket. Exact when both sides return their
      whole support; otherwise an approximation (callers flag it, see :class:`ActionKL`).

    ``q`` is floored at ``eps``. Never negative.
    """
    if isinstance(p_logprobs, Mapping) != isinstance(q_logprobs, Mapping):
        raise ConfigError(
            "p and q must both be mappings (top-k) or both arrays (full vocabulary); got "
            f"{type(p_logprobs).__name__} and {type(q_logprobs).__name__}"
        )
    if not isinstance(p_logprobs, Mapping):
        return _full_token_kl(p_logprobs, q_logprobs)
    union = set(p_logprobs) | set(q_logprobs)
    p = _complete_side(p_logprobs, union)
    q = _complete_side(q_logprobs, union)
    kl = 0.0
    for key, pk in p.items():
        if pk > 0.0:
            kl += pk * (math.log(pk) - math.log(max(q.get(key, 0.0), eps)))
    return max(kl, 0.0)


@dataclass
class ActionKL:
    """Action-block KL between two tiers: ``total`` = sum of ``per_token``.

    ``route`` is "full-vocab" (exact) or "topk-union" (top-k servers; ``topk_truncated`` then
    says the value is an approximation from truncated distributions).
    """

    total: float
    per_token: list[float]
    tokens: list[str]
    route: str
    topk_truncated: bool


def _position_maps(
    score: ActionScore, i: int, other_keys: set[Hashable], by_id: bool
) -> Mapping[Hashable, float]:
    """Top-k mapping of one position; a full-vocabulary side contributes exact values on
    its own top entries plus every key the other side returned."""
    if score.full_logprobs is not None and by_id:
        row = np.asarray(score.full_logprobs[i], dtype=np.float64)
        k = max(len(other_keys), 1)
        top = np.argpartition(-row, min(k, row.size - 1))[:k]
        keys = {int(t) for t in top} | {int(t) for t in other_keys}  # type: ignore[call-overload]
        return {t: float(row[t]) for t in keys}
    if by_id:
        assert score.topk_ids is not None
        return score.topk_ids[i]
    assert score.logprobs is not None
    return score.logprobs[i]


def action_kl_from_scores(high: ActionScore, low: ActionScore) -> ActionKL:
    """Per-token ``KL(p_high || p_low)`` over the action block of two teacher-forced scores of
    the same action (same tokenizer), summed."""
    n = len(high.token_logprobs)
    if len(low.token_logprobs) != n or (
        high.token_ids is not None
        and low.token_ids is not None
        and list(high.token_ids) != list(low.token_ids)
    ):
        raise ConfigError(
            "expected both tiers to tokenize the action identically; got "
            f"{high.token_ids or high.tokens} vs {low.token_ids or low.tokens}"
        )
    if n == 0:
        return ActionKL(0.0, [], [], _FULL_ROUTE, False)
    per: list[float] = []
    if high.full_logprobs is not None and low.full_logprobs is not None:
        for i in range(n):
            per.append(_full_token_kl(high.full_logprobs[i], low.full_logprobs[i]))
        return ActionKL(sum(per), per, list(high.tokens), _FULL_ROUTE, False)
    by_id = all(s.topk_ids is not None or s.full_logprobs is not None for s in (high, low))
    if not by_id and (high.logprobs is None or low.logprobs is None):
        raise ConfigError(
            "expected per-position log-prob distributions (full_logprobs, topk_ids or "
            "logprobs) from both tiers; got a score with none"
        )
    for i in range(n):
        hk: set[Hashable] = set(high.topk_ids[i]) if high.topk_ids is not None else set()
        lk: set[Hashable] = set(low.topk_ids[i]) if low.topk_ids is not None else set()
        p = _position_maps(high, i, lk, by_id)
        q = _position_maps(low, i, hk, by_id)
        per.append(token_kl_from_logprobs(p, q))
    truncated = high.topk_truncated or low.topk_truncated
    return ActionKL(sum(per), per, list(high.tokens), _TOPK_ROUTE, truncated)


def action_token_kl_report(
    high: PrecisionBackend, low: PrecisionBackend, prompt: Prompt, action: str
) -> ActionKL:
    """Like :func:`action_token_kl`, with the per-token values and the top-k flag."""
    return action_kl_from_scores(high.score(prompt, action), low.score(prompt, action))


def action_token_kl(
    high: PrecisionBackend, low: PrecisionBackend, prompt: Prompt, action: str
) -> float:
    """Action-only KL of a state: teacher-force the high tier's ``action`` (its generated
    text for this prompt) after ``prompt`` in both tiers and sum ``KL(p_high || p_low)`` over
    the action's tokens. Works for every backend through ``score()``; with top-k-only servers
    the value is approximate (see :func:`action_token_kl_report` for the flag). Thinking
    steps get no KL: do not call it for them."""
    return action_token_kl_report(high, low, prompt, action).total
