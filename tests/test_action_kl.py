"""Action-token KL: the pure per-token core on known values, and the action-block sum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from precision_gym.backends.base import ActionScore
from precision_gym.error import ConfigError
from precision_gym.kl import (
    action_kl_from_scores,
    action_token_kl,
    action_token_kl_report,
    token_kl_from_logprobs,
)

L = math.log


def test_full_vocab_known_value():
    kl = token_kl_from_logprobs(np.log([0.5, 0.5]), np.log([0.25, 0.75]))
    assert kl == pytest.approx(0.5 * L(2) + 0.5 * L(2 / 3), abs=1e-12)
    assert token_kl_from_logprobs([L(0.2), L(0.8)], [L(0.2), L(0.8)]) == pytest.approx(0.0)


def test_full_vocab_renormalises_and_rejects_shapes():
    p = np.log([0.5, 0.5]) + 1e-4  # float drift: not exactly normalised
    assert token_kl_from_logprobs(p, p) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match=r"equal length; got shapes \(2,\) and \(3,\)"):
        token_kl_from_logprobs(np.log([0.5, 0.5]), np.log([0.2, 0.3, 0.5]))
    with pytest.raises(ConfigError, match=r"both be mappings \(top-k\) or both arrays"):
        token_kl_from_logprobs({"a": 0.0}, [0.0])


def test_topk_same_keys_buckets_the_remainder():
    p = {"a": L(0.5), "b": L(0.3)}  # rest 0.2
    q = {"a": L(0.4), "b": L(0.4)}  # rest 0.2
    expect = 0.5 * L(0.5 / 0.4) + 0.3 * L(0.3 / 0.4) + 0.2 * L(0.2 / 0.2)
    assert token_kl_from_logprobs(p, q) == pytest.approx(expect, abs=1e-12)


def test_topk_union_disjoint_keys_known_value():
    # p returned {a: .6}: b is missing -> share min(.6, .4/2) = .2, rest .2
    # q returned {b: .7}: a is missing -> share min(.7, .3/2) = .15, rest .15
    expect = 0.6 * L(0.6 / 0.15) + 0.2 * L(0.2 / 0.7) + 0.2 * L(0.2 / 0.15)
    got = token_kl_from_logprobs({"a": L(0.6)}, {"b": L(0.7)})
    assert got == pytest.approx(expect, abs=1e-12)


def test_topk_complete_support_is_exact():
    p = {"x": L(0.1), "y": L(0.9)}
    q = {"x": L(0.3), "y": L(0.7)}
    exact = 0.1 * L(0.1 / 0.3) + 0.9 * L(0.9 / 0.7)
    assert token_kl_from_logprobs(p, q) == pytest.approx(exact, abs=1e-9)


def test_missing_key_share_capped_by_smallest_returned_prob():
    # q's remainder .5 with one missing key: share min(.05, .5/2) = .05
    p = {"a": L(0.9), "c": L(0.1)}
    q = {"a": L(0.45), "b": L(0.05)}
    qa, qc, qrest = 0.45, 0.05, 0.5 - 0.05
    pa, pc, prest = 0.9, 0.1, 0.0
    pb = min(0.1, 0.0 / 2)  # p's remainder is 0
    expect = pa * L(pa / qa) + pc * L(pc / qc)
    assert pb == 0 and prest == 0
    assert token_kl_from_logprobs(p, q) == pytest.approx(expect, abs=1e-9)
    assert qrest > 0


def _full(rows):
    return np.log(np.asarray(rows, dtype=np.float64))


def test_action_block_sums_per_token_full():
    hi = ActionScore(
        ["a", "b"],
        [L(0.5), L(0.9)],
        token_ids=[0, 1],
        full_logprobs=_full([[0.5, 0.5], [0.1, 0.9]]),
    )
    lo = ActionScore(
        ["a", "b"],
        [L(0.25), L(0.7)],
        token_ids=[0, 1],
        full_logprobs=_full([[0.25, 0.75], [0.3, 0.7]]),
    )
    r = action_kl_from_scores(hi, lo)
    t0 = 0.5 * L(2) + 0.5 * L(2 / 3)
    t1 = 0.1 * L(0.1 / 0.3) + 0.9 * L(0.9 / 0.7)
    assert r.per_token == pytest.approx([t0, t1])
    assert r.total == pytest.approx(t0 + t1)
    assert (r.route, r.topk_truncated) == ("full-vocab", False)


def test_action_block_topk_flags_truncation():
    hi = ActionScore(
        ["a"], [L(0.5)], token_ids=[0], topk_truncated=True, topk_ids=[{0: L(0.5), 1: L(0.3)}]
    )
    lo = ActionScore(
        ["a"], [L(0.4)], token_ids=[0], topk_truncated=True, topk_ids=[{0: L(0.4), 1: L(0.4)}]
    )
    r = action_kl_from_scores(hi, lo)
    assert r.route == "topk-union" and r.topk_truncated
    assert r.total == pytest.approx(0.5 * L(0.5 / 0.4) + 0.3 * L(0.3 / 0.4))


def test_action_block_mixed_full_and_topk_uses_exact_values_of_full_side():
    full = _full([[0.5, 0.3, 0.2]])
    hi = ActionScore(["a"], [L(0.5)], token_ids=[0], full_logprobs=full)
    lo = ActionScore(
        ["a"], [L(0.5)], token_ids=[0], topk_truncated=True, topk_ids=[{0: L(0.5), 1: L(0.3)}]
    )
    r = action_kl_from_scores(hi, lo)
    assert r.total == pytest.approx(0.0, abs=1e-9) and r.topk_truncated is True


def test_action_block_string_keys_and_errors():
    hi = ActionScore(["go"], [L(0.6)], logprobs=[{"go": L(0.6)}], topk_truncated=True)
    lo = ActionScore(["go"], [L(0.6)], logprobs=[{"go": L(0.6)}], topk_truncated=True)
    assert action_kl_from_scores(hi, lo).total == pytest.approx(0.0, abs=1e-12)
    other = ActionScore(["g", "o"], [0.0, 0.0], token_ids=[5, 6])
    with pytest.raises(ConfigError, match="expected both tiers to tokenize the action identically"):
        action_kl_from_scores(ActionScore(["go"], [0.0], token_ids=[4]), other)
    with pytest.raises(ConfigError, match="expected per-position log-prob distributions"):
        action_kl_from_scores(ActionScore(["go"], [0.0]), ActionScore(["go"], [0.0]))
    assert action_kl_from_scores(ActionScore([], []), ActionScore([], [])).total == 0.0


class _FixedScorer:
    """A backend whose score() returns a fixed distribution (any backend works via score)."""

    simulated = True

    def __init__(self, name, rows):
        self.name, self.rows, self.calls = name, rows, []

    def score(self, prompt, action):
        self.calls.append((prompt, action))
        return ActionScore(
            list(action),
            [0.0] * len(action),
            token_ids=list(range(len(action))),
            full_logprobs=_full(self.rows),
        )

    def generate(self, requests):  # pragma: no cover - unused
        raise NotImplementedError

    def close(self):  # pragma: no cover
        pass


def test_action_token_kl_scores_the_same_action_in_both_tiers():
    hi = _FixedScorer("hi", [[0.5, 0.5], [0.1, 0.9]])
    lo = _FixedScorer("lo", [[0.25, 0.75], [0.3, 0.7]])
    kl = action_token_kl(hi, lo, "P>", "ab")
    assert kl == pytest.approx(0.5 * L(2) + 0.5 * L(2 / 3) + 0.1 * L(1 / 3) + 0.9 * L(9 / 7))
    assert hi.calls == lo.calls == [("P>", "ab")]
    assert action_token_kl_report(hi, lo, "P>", "ab").route == "full-vocab"
