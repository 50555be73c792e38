"""The opt-in generation cache: greedy real-tier calls are paid once, sampled ones never cached."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from precision_gym.backends.base import Generation, GenerationRequest, SamplingParams
from precision_gym.backends.cache import CachedBackend, GenerationCache
from precision_gym.envs import MixedPrecisionAgentEnv
from precision_gym.envs.vector import BatchedAgentVectorEnv
from precision_gym.error import ConfigError
from precision_gym.tiers import PrecisionTier

OPTS = {"split": "valid_unseen", "task_index": 2}


class ScriptedLLM:
    """A real-tier stand-in (not simulated): answers from the admissible commands, counts calls."""

    simulated = False

    def __init__(self, name):
        self.name, self.model, self.calls = name, f"scripted-{name}", 0

    def generate(self, requests):
        self.calls += len(requests)
        out = []
        for r in requests:
            cmds = [c for c in r.context.admissible_commands if c.startswith("go to")]
            text = cmds[(r.context.step + len(self.name)) % len(cmds)] if cmds else "look"
            out.append(Generation(text, completion_tokens=5 + r.context.step, wall_time_s=0.02))
        return out

    def score(self, prompt, action):
        raise NotImplementedError

    def close(self):
        pass


def _env(path, tiers):
    return MixedPrecisionAgentEnv(
        tiers=[PrecisionTier(t.name, t) for t in tiers],
        latency="alfworld-qwen3-4b-awq-w4",
        generation_cache=path,
    )


def _play(env, actions):
    env.reset(seed=0, options=OPTS)
    return [env.step(a)[4] for a in actions]


def test_greedy_calls_are_paid_once_and_replayed_identically(tmp_path):
    path = tmp_path / "gen.sqlite"
    llms = [ScriptedLLM("bf16"), ScriptedLLM("w4")]
    env = _env(path, llms)
    actions = [0, 1, 1, 0]
    first = _play(env, actions)
    calls = [b.calls for b in llms]
    assert first[-1]["generation_cache"] == {"hits": 0, "misses": 4, "hit_rate": 0.0}
    second = _play(env, actions)
    assert [b.calls for b in llms] == calls  # every call of the revisit was a hit
    assert second[-1]["generation_cache"]["hits"] == 4
    keys = ("action", "completion_tokens", "step_latency_s", "episode_time_s", "observation")
    assert [[i[k] for k in keys] for i in second] == [[i[k] for k in keys] for i in first]
    env.close()
    # another process (here: a new env on the same file) finds them too
    fresh = [ScriptedLLM("bf16"), ScriptedLLM("w4")]
    again = _play(_env(path, fresh), actions)
    assert sum(b.calls for b in fresh) == 0 and again[-1]["generation_cache"]["hit_rate"] == 1.0


def test_sampled_calls_are_never_cached(tmp_path):
    cache = GenerationCache(tmp_path / "gen.sqlite")
    llm = ScriptedLLM("bf16")
    backend = CachedBackend(llm, cache)
    env = _env(tmp_path / "other.sqlite", [ScriptedLLM("a"), ScriptedLLM("b")])
    env.reset(seed=0, options=OPTS)
    req = GenerationRequest("p", SamplingParams(temperature=0.7), env.step_context())
    backend.generate([req, req])
    backend.generate([req])
    assert llm.calls == 3 and cache.stats() == {"hits": 0, "misses": 0, "hit_rate": 0.0}
    assert cache._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 0


def test_cache_needs_a_real_tier_and_a_cache_file(tmp_path):
    with pytest.raises(ConfigError, match="expected at least one non-simulated tier"):
        MixedPrecisionAgentEnv(generation_cache=tmp_path / "gen.sqlite")
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="is not a precision-gym SQLite cache"):
        GenerationCache(bad)


class ThreadSafeScriptedLLM(ScriptedLLM):
    """The scripted tier, declared safe to call from several threads (as HTTP tiers are)."""

    concurrent_calls = True

    def __init__(self, name):
        super().__init__(name)
        self.threads = set()

    def generate(self, requests):
        self.threads.add(threading.current_thread().name)
        return super().generate(requests)


def test_tiers_called_at_once_through_the_cache_lose_no_count(tmp_path):
    llms = [ThreadSafeScriptedLLM("bf16"), ThreadSafeScriptedLLM("w4")]
    vec = BatchedAgentVectorEnv(
        num_envs=4,
        tiers=[PrecisionTier(t.name, t) for t in llms],
        latency="alfworld-qwen3-4b-awq-w4",
        generation_cache=tmp_path / "gen.sqlite",
    )
    try:
        assert all(t.backend.concurrent_calls for t in vec.tiers)  # the wrapper says so too
        for _ in range(2):  # the second pass revisits every state: hits
            vec.reset(seed=0, options={"split": "valid_unseen", "task_index": [2, 2, 5, 5]})
            for _ in range(3):
                vec.step(np.array([0, 1, 1, 0]))
        stats = vec.tiers[0].backend.cache.stats()
        assert stats["hits"] + stats["misses"] == 2 * 3 * 4  # one lookup per request
        assert stats["misses"] == sum(b.calls for b in llms) and stats["hits"] >= 12
        assert all(threading.current_thread().name not in b.threads for b in llms)
    finally:
        vec.close()
