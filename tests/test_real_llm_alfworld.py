"""``benchmarks/real_llm_alfworld.run_episode`` plays through the env's agent step, on both
real backends (a tiny random Qwen3: the actions are nonsense, the plumbing is real)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from conftest import ROOT, requires_alfworld

from precision_gym.backends.openai_backend import OpenAIBackend
from precision_gym.backends.transformers_backend import TransformersBackend

STEP_KEYS = {
    "t",
    "text",
    "action",
    "kind",
    "tokens",
    "wall_s",
    "prompt_tokens",
    "cached",
    "kl",
    "obs",
}


def _bench():
    spec = importlib.util.spec_from_file_location(
        "real_llm_alfworld", ROOT / "benchmarks" / "real_llm_alfworld.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _game(bench) -> Path:
    return bench.pick_games(Path(os.environ["ALFWORLD_DATA"]) / "json_2.1.1", 1)[0]


def _check(bench, ep, steps: int, low: str) -> None:
    assert set(ep) == {"game", "won", "intro", "steps"}
    assert ep["won"] is False and len(ep["steps"]) == steps
    assert ep["intro"].startswith("You are in the middle of a room")
    for t, s in enumerate(ep["steps"]):
        assert set(s) == STEP_KEYS and s["t"] == t
        assert s["kind"] in ("think", "action", "invalid") and s["tokens"] > 0
        assert s["wall_s"] > 0 and s["prompt_tokens"] > 0
        assert s["kind"] == "think" or set(s["kl"]) == {low}
    # the recorded history rebuilds the prompts the steps sent: step t's prompt ends with
    # the actions and observations of steps < t
    prompts = bench._rebuild_prompts(ep, bench.ALFWorldReActAgent())
    assert len(prompts) == steps
    assert f"> {ep['steps'][0]['action']}\n{ep['steps'][0]['obs'].strip()}\n>" in prompts[1]


@requires_alfworld
def test_run_episode_in_process(tiny_qwen3_dir):
    bench = _bench()
    high = TransformersBackend(tiny_qwen3_dir, "bf16")
    low = TransformersBackend(tiny_qwen3_dir, "int4", 32, name="int4")
    try:
        ep = bench.run_episode(high, _game(bench), 2, [low])
    finally:
        high.close()
        low.close()
    _check(bench, ep, 2, "int4")


@requires_alfworld
@pytest.mark.vllm
def test_run_episode_over_http(vllm_server):
    bench = _bench()
    with OpenAIBackend(
        vllm_server.base_url, vllm_server.name, name="bf16", timeout_s=120, scoring="stepwise"
    ) as high:
        ep = bench.run_episode(high, _game(bench), 2, [high])
    _check(bench, ep, 2, "bf16")
