"""TransformersBackend on the tiny random Qwen3: generation, KV-prefix reuse, scoring, tiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precision_gym.backends.base import GenerationRequest, PrecisionBackend, SamplingParams
from precision_gym.backends.transformers_backend import TransformersBackend
from precision_gym.error import BackendError, CheckpointError, ConfigError
from precision_gym.kl import action_token_kl

INTRO = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, "
    "a fridge 1, and a microwave 1.\n\nYour task is to: put a cool apple in cabinet.\n>"
)
STEPS = [
    (" go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed."),
    (" open fridge 1", "You open the fridge 1. In it, you see a apple 1."),
    (" take apple 1 from fridge 1", "You pick up the apple 1 from the fridge 1."),
]
GREEDY = SamplingParams(max_tokens=12, temperature=0.0)


def prompts() -> list[str]:
    out, p = [INTRO], INTRO
    for action, obs in STEPS:
        p = f"{p}{action}\n{obs}\n>"
        out.append(p)
    return out


@pytest.fixture(scope="module")
def fp32_cached(tiny_qwen3_dir):
    return TransformersBackend(tiny_qwen3_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def fp32_plain(tiny_qwen3_dir):
    return TransformersBackend(tiny_qwen3_dir, dtype=torch.float32, prefix_cache=False)


@pytest.fixture(scope="module")
def bf16(tiny_qwen3_dir):
    return TransformersBackend(tiny_qwen3_dir)


def test_is_a_precision_backend(bf16):
    assert isinstance(bf16, PrecisionBackend)
    assert bf16.simulated is False and bf16.name == "bf16"


def test_prefix_cache_equals_no_cache_path(fp32_cached, fp32_plain):
    fp32_cached.clear_cache()
    cached_counts = []
    for p in prompts():
        a = fp32_cached.generate([GenerationRequest(p, GREEDY)])[0]
        b = fp32_plain.generate([GenerationRequest(p, GREEDY)])[0]
        assert a.text == b.text and a.completion_tokens == b.completion_tokens
        cached_counts.append(a.meta["cached_prompt_tokens"])
        sa, sb = fp32_cached.score(p, STEPS[0][0]), fp32_plain.score(p, STEPS[0][0])
        np.testing.assert_allclose(sa.full_logprobs, sb.full_logprobs, atol=1e-4)
        assert sa.meta["cached_prompt_tokens"] == sa.meta["prompt_tokens"] - 1
    assert cached_counts[0] == 0 and all(c > 0 for c in cached_counts[1:])
    assert all(
        b.meta["cached_prompt_tokens"] == 0
        for b in [fp32_plain.generate([GenerationRequest(INTRO, GREEDY)])[0]]
    )


def test_prefix_cache_with_diverging_prompts(fp32_cached, fp32_plain):
    fp32_cached.clear_cache()
    ps = prompts()
    other = ps[1].replace("closed", "open")  # shares a prefix with ps[1], then diverges
    for p in (ps[1], other, ps[2], other, ps[3]):
        a = fp32_cached.generate([GenerationRequest(p, GREEDY)])[0]
        b = fp32_plain.generate([GenerationRequest(p, GREEDY)])[0]
        assert a.text == b.text


def test_bf16_prefix_cache_close_to_no_cache(tiny_qwen3_dir, bf16):
    plain = TransformersBackend(tiny_qwen3_dir, prefix_cache=False)
    bf16.clear_cache()
    for p in prompts():
        bf16.score(p, " go to fridge 1")
    a, b = bf16.score(prompts()[-1], " open fridge 1"), plain.score(prompts()[-1], " open fridge 1")
    assert a.meta["cached_prompt_tokens"] > 0
    np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=0.1)


def test_generation_fields_and_call_log(bf16):
    n_before = len(bf16.call_log)
    gens = bf16.generate(
        [
            GenerationRequest(INTRO, SamplingParams(max_tokens=5)),
            GenerationRequest(prompts()[1], SamplingParams(max_tokens=3)),
        ]
    )
    assert [g.completion_tokens for g in gens] == [5, 3]
    assert all(g.wall_time_s > 0 and g.prompt_tokens > 10 for g in gens)
    recs = bf16.call_log[n_before:]
    assert [(r.tier, r.kind, r.completion_tokens) for r in recs] == [
        ("bf16", "generate", 5),
        ("bf16", "generate", 3),
    ]
    assert all(r.wall_time_s == g.wall_time_s for r, g in zip(recs, gens, strict=True))


def test_stop_strings_cut_the_text(fp32_plain):
    full = fp32_plain.generate([GenerationRequest(INTRO, SamplingParams(max_tokens=12))])[0]
    assert len(full.text) > 4
    stop = full.text[3:5]
    cut = fp32_plain.generate(
        [GenerationRequest(INTRO, SamplingParams(max_tokens=12, stop=(stop,)))]
    )[0]
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.meta["finish_reason"] == "stop" and cut.completion_tokens <= 12


def test_sampling_is_seeded(bf16):
    sp = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, seed=7)
    a = bf16.generate([GenerationRequest(INTRO, sp)])[0].text
    b = bf16.generate([GenerationRequest(INTRO, sp)])[0].text
    assert a == b


def test_chat_prompt_uses_template(bf16):
    msgs = [{"role": "user", "content": "Your task is to: put a mug in fridge."}]
    ids = bf16.encode_prompt(msgs)
    assert bf16.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    g = bf16.generate([GenerationRequest(msgs, SamplingParams(max_tokens=4))])[0]
    assert g.completion_tokens <= 4 and g.prompt_tokens == len(ids)


def test_score_is_teacher_forced_full_logits(tiny_qwen3_dir, fp32_plain):
    p, action = prompts()[2], " take apple 1 from fridge 1"
    s = fp32_plain.score(p, action)
    ids = fp32_plain.encode_prompt(p) + fp32_plain.encode_action(action)
    with torch.no_grad():
        logits = fp32_plain.model(torch.tensor([ids])).logits[0].float()
    ref = torch.log_softmax(logits, -1)[len(ids) - len(s.token_ids) - 1 : -1]
    np.testing.assert_allclose(s.full_logprobs, ref.numpy(), atol=1e-4)
    assert s.full_logprobs.shape == (len(s.token_ids), len(fp32_plain.tokenizer))
    assert "".join(s.tokens) == action
    np.testing.assert_allclose(
        s.token_logprobs, s.full_logprobs[np.arange(len(s.token_ids)), s.token_ids]
    )
    np.testing.assert_allclose(np.exp(s.full_logprobs).sum(-1), 1.0, atol=1e-4)
    assert s.topk_truncated is False
    empty = fp32_plain.score(p, "")
    assert empty.tokens == [] and empty.token_logprobs == []


def test_quantized_tiers_change_linears_but_not_lm_head(tiny_qwen3_dir, bf16):
    w4 = TransformersBackend(tiny_qwen3_dir, "int4", group_size=64)
    assert w4.name == "int4-g64"
    assert "lm_head" not in w4.quantized_modules and len(w4.quantized_modules) == 14
    assert torch.equal(w4.model.lm_head.weight, bf16.model.lm_head.weight)
    q = w4.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q, bf16.model.model.layers[0].self_attn.q_proj.weight)
    assert max(len(set(g.tolist())) for g in q.float().reshape(-1, 64)) <= 16


def test_action_kl_grows_as_bits_shrink(tiny_qwen3_dir):
    hi = TransformersBackend(tiny_qwen3_dir, dtype=torch.float32)
    w4 = TransformersBackend(tiny_qwen3_dir, "int4", 64, dtype=torch.float32)
    w3 = TransformersBackend(tiny_qwen3_dir, "int3", 64, dtype=torch.float32)
    k4 = sum(action_token_kl(hi, w4, p, a) for p, (a, _) in zip(prompts(), STEPS, strict=False))
    k3 = sum(action_token_kl(hi, w3, p, a) for p, (a, _) in zip(prompts(), STEPS, strict=False))
    k0 = action_token_kl(hi, hi, prompts()[0], STEPS[0][0])
    assert k0 == pytest.approx(0.0, abs=1e-6)
    assert 0 < k4 < k3


def test_bad_arguments(tiny_qwen3_dir, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"precision must be one of \['bf16', 'int3', 'int4'\]; "
        r"got 'int2'",
    ):
        TransformersBackend(tiny_qwen3_dir, "int2")
    with pytest.raises(CheckpointError, match=r"expected a model directory; got .*missing"):
        TransformersBackend(tmp_path / "missing")


# --- one padded batch per generate call ------------------------------------------------------
def batch_requests(params: list[SamplingParams]) -> list[GenerationRequest]:
    """Prompts of different lengths (so rows are left-padded), one per sampling setting."""
    ps = prompts() + [p.replace("apple", "tomato") for p in prompts()]
    return [GenerationRequest(p, sp) for p, sp in zip(ps, params, strict=False)]


def test_batch_greedy_equals_one_by_one(fp32_plain, fp32_cached):
    first = fp32_plain.generate([GenerationRequest(INTRO, SamplingParams(max_tokens=12))])[0]
    stop = first.text[3:5]  # cuts the first prompt's output: rows finish at different steps
    params = [SamplingParams(max_tokens=12, stop=(stop,))] + [
        SamplingParams(max_tokens=m) for m in (1, 12, 7, 20, 3, 12, 9)
    ]
    reqs = batch_requests(params)
    n_before = len(fp32_plain.call_log)
    batch = fp32_plain.generate(reqs)
    one = [fp32_plain.generate([r])[0] for r in reqs]
    fp32_cached.clear_cache()
    cached = [fp32_cached.generate([r])[0] for r in reqs]  # with KV-prefix reuse
    for b, o, c in zip(batch, one, cached, strict=True):
        assert (b.text, b.completion_tokens) == (o.text, o.completion_tokens)
        assert (b.text, b.completion_tokens) == (c.text, c.completion_tokens)
        assert b.meta["finish_reason"] == o.meta["finish_reason"]
        assert b.prompt_tokens == o.prompt_tokens and b.meta["cached_prompt_tokens"] == 0
    assert batch[0].meta["finish_reason"] == "stop" and batch[0].text == first.text[:3]
    assert [g.completion_tokens for g in batch][1:3] == [1, 12]
    recs = fp32_plain.call_log[n_before : n_before + len(reqs)]
    assert [r.wall_time_s for r in recs] == [g.wall_time_s for g in batch]
    # each request's wall time runs from the batch start to its own last token
    assert batch[1].wall_time_s < batch[4].wall_time_s


def test_batch_seeded_sampling_equals_one_by_one(fp32_plain):
    params = [SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=s) for s in range(5)]
    reqs = batch_requests(params)
    batch = fp32_plain.generate(reqs)
    one = [fp32_plain.generate([r])[0] for r in reqs]
    assert [g.text for g in batch] == [g.text for g in one]
    assert len({g.text for g in batch}) > 1


def test_batch_runs_one_forward_per_token(tiny_qwen3_dir):
    def forwards(backend: TransformersBackend, reqs: list[GenerationRequest]) -> int:
        calls = []
        hook = backend.model.register_forward_hook(lambda *_: calls.append(1))
        try:
            backend.generate(reqs)
        finally:
            hook.remove()
        return len(calls)

    reqs = batch_requests([SamplingParams(max_tokens=4)] * 3)
    batched = TransformersBackend(tiny_qwen3_dir, dtype=torch.float32, prefix_cache=False)
    assert forwards(batched, reqs) == 4  # prefill + 3 decoding steps, all rows together
    split = TransformersBackend(tiny_qwen3_dir, dtype=torch.float32, max_batch_size=2)
    assert forwards(split, reqs) == 4 + 4  # a batch of 2, then a single request
    one_by_one = TransformersBackend(tiny_qwen3_dir, dtype=torch.float32, max_batch_size=1)
    assert forwards(one_by_one, reqs) == 3 * 4


def test_batch_bad_input(tiny_qwen3_dir, fp32_plain):
    with pytest.raises(ConfigError, match=r"max_batch_size must be None or >= 1; got 0"):
        TransformersBackend(tiny_qwen3_dir, max_batch_size=0)
    n_before = len(fp32_plain.call_log)
    with pytest.raises(BackendError, match=r"expected a non-empty prompt; .*request 1 of 2"):
        fp32_plain.generate([GenerationRequest(INTRO), GenerationRequest("")])
    assert len(fp32_plain.call_log) == n_before  # rejected before any forward
