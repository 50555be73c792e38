"""Fault injection, backend (issue 13, probes 8-10): a fake OpenAI-compatible server (a real
HTTP server on 127.0.0.1 in a thread) answers with what a broken or hostile server sends.
Bad responses become BackendError before anything runs in the game; runaway outputs are cut
and never re-sent; call_log counts the requests really sent; a dead or hung server costs a
bounded time per step."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import pytest
from conftest import requires_alfworld
from net_helpers import FakeOpenAIServer, Reply, completion

from precision_gym.backends.base import GenerationRequest, SamplingParams
from precision_gym.backends.openai_backend import MAX_OUTPUT_CHARS, OpenAIBackend
from precision_gym.error import BackendError
from precision_gym.prompting.base import MAX_ACTION_CHARS
from precision_gym.tiers import PrecisionTier


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[dict[str, Any]], Reply]], FakeOpenAIServer]]:
    made: list[FakeOpenAIServer] = []

    def make(reply: Callable[[dict[str, Any]], Reply]) -> FakeOpenAIServer:
        made.append(FakeOpenAIServer(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _env(url: str, **backend_kw: Any) -> gym.Env:
    kw = {"max_retries": 0, "backoff_s": 0.0, **backend_kw}
    tiers = [
        PrecisionTier("bf16", OpenAIBackend(url, "m", name="bf16", **kw)),
        PrecisionTier("w4", OpenAIBackend(url, "m", name="w4", **kw)),
    ]
    return gym.make(
        "DMR-ALFWorld-v0",
        tiers=tiers,
        latency="alfworld-qwen3-4b-awq-w4",
        max_retries=1,
        retry_backoff_s=0.0,
    )


OPTS = {"split": "valid_unseen", "task_index": 3}

# ----------------------------------------------------------------------------- probe 8


@requires_alfworld
@pytest.mark.parametrize(
    ("tokens", "shown"),
    [(-1_000_000, "completion_tokens=-1000000"), (10**9, "completion_tokens=1000000000")],
)
def test_bad_token_count_is_a_backend_error_before_the_game_moves(server, tokens, shown):
    srv = server(lambda body: completion("look", tokens))
    env = _env(srv.url)
    env.reset(seed=0, options=OPTS)
    _, reward, terminated, _, info = env.step(1)  # no ConfigError from the cost model
    assert terminated and shown in info["backend_error"]
    assert "expected a JSON object with choices[0].text (str)" in info["backend_error"]
    assert env.unwrapped.task.commands == []  # "look" was never executed in the game
    # one retry layer: the backend's (max_retries=0 here, and a bad body is not resent); the
    # env does not send the request again
    assert len(srv.requests) == 1 and reward == pytest.approx(-0.02 * info["episode_time_s"])
    env.close()


# ----------------------------------------------------------------------------- probe 9


@requires_alfworld
def test_runaway_output_is_cut_and_never_resent(server):
    huge = "go to " + "x" * 1_000_000  # one 1 MB line
    srv = server(lambda body: completion(huge, 100))
    env = _env(srv.url)
    env.reset(seed=0, options=OPTS)
    sizes = []
    for _ in range(3):
        _, _, terminated, _, info = env.step(0)
        assert not terminated and info["backend_error"] is None
        assert len(info["raw_output"]) == MAX_OUTPUT_CHARS
        assert len(info["action"]) == MAX_ACTION_CHARS and info["is_valid"] is False
        sizes.append(len(srv.requests[-1]["prompt"]))
    # each later prompt grows by one capped action + "Nothing happens.", never by 1 MB
    assert sizes[2] - sizes[1] < MAX_ACTION_CHARS + 200 and sizes[2] < 60_000
    backend = env.unwrapped.tiers[0].backend
    assert backend.call_log[-1].ok and len(env.unwrapped.task.commands) == 0
    env.close()


# ----------------------------------------------------------------------------- probe 10


def test_call_log_counts_requests_really_sent(server):
    script: list[Reply] = []
    srv = server(lambda body: script.pop(0))
    b = OpenAIBackend(srv.url, "m", name="w4", max_retries=2, backoff_s=0.0)
    req = GenerationRequest("prompt", SamplingParams(max_tokens=10))
    try:
        cases = [
            ([completion("ok")], None, 1),  # sent once, fine
            ([(500, "busy"), completion("ok")], None, 2),  # one retry
            ([(400, {"error": "bad"})], "expected HTTP 200; got HTTP 400", 1),  # not retried
            ([completion("x", -5)], "completion_tokens=-5", 1),  # bad body: not resent here
            ([(200, "<html>")], "expected a JSON body", 1),
            ([(503, "a"), (503, "b"), (503, "c")], "failed after 3 attempts", 3),
        ]
        for replies, error, attempts in cases:
            script[:] = list(replies)
            before = len(srv.requests)
            if error is None:
                b.generate([req])
            else:
                with pytest.raises(BackendError, match=error):
                    b.generate([req])
            sent = len(srv.requests) - before
            rec = b.call_log[-1]
            assert (sent, rec.attempts, rec.ok) == (attempts, attempts, error is None), replies
    finally:
        b.close()


# ----------------------------------------------------------------------------- time bound


@requires_alfworld
def test_a_hung_server_costs_a_bounded_time_per_step(server):
    srv = server(lambda body: (0, None))  # accepts, never answers
    env = _env(srv.url, timeout_s=0.5, connect_timeout_s=0.5)
    env.reset(seed=0, options=OPTS)
    t0 = time.perf_counter()
    _, _, terminated, _, info = env.step(0)
    wall = time.perf_counter() - t0
    # one retry layer: backend attempts (max_retries + 1 = 1) x timeout_s (0.5 s), + slack;
    # the env does not retry the backend's final error (before: 2 requests)
    assert terminated and "timeout" in info["backend_error"] and wall < 2 * 0.5 + 3.0
    assert len(srv.requests) == 1
    env.close()


@requires_alfworld
def test_a_dead_server_ends_the_episode_with_backend_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(f"http://127.0.0.1:{port}/v1")
    env.reset(seed=0, options=OPTS)
    t0 = time.perf_counter()
    _, _, terminated, _, info = env.step(0)
    assert terminated and "connection error" in info["backend_error"]
    assert time.perf_counter() - t0 < 5.0
    env.close()
