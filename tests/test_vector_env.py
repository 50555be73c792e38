"""The batched vector env: registration, same trajectories as N single envs, one generate call
per tier and one encoder call per step (HTTP tiers' calls at once), worker processes ended by
close()."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest
from net_helpers import FakeOpenAIServer, completion

import precision_gym
from precision_gym.backends.openai_backend import OpenAIBackend
from precision_gym.envs.vector import NEXT_STEP, BatchedAgentVectorEnv
from precision_gym.error import ConfigError, InvalidActionError
from precision_gym.tiers import PrecisionTier, simulated_tiers

N = 3
STEPS = 9
# short episodes so that autoreset happens inside the run
KW = {"max_steps": 3}


def _single_rollout(env_id, seed, actions):
    """N single envs driven like Gymnasium's NEXT_STEP autoreset."""
    envs = [gym.make(env_id, **KW) for _ in range(N)]
    out = []
    for i, env in enumerate(envs):
        obs, info = env.reset(seed=seed + i)
        rows = [("reset", info["task_id"], obs["embeddings"], obs["mask"])]
        done = False
        for t in range(STEPS):
            if done:
                obs, info = env.reset()
                rows.append(("reset", info["task_id"], obs["embeddings"], obs["mask"]))
                done = False
                continue
            obs, r, term, trunc, info = env.step(int(actions[t][i]))
            rows.append(
                (info["action"], info["task_id"], obs["embeddings"], obs["mask"], r, term, trunc)
            )
            done = term or trunc
        out.append(rows)
        env.close()
    return out


def _vector_rollout(env_id, seed, actions, workers):
    vec = gym.make_vec(
        env_id, num_envs=N, vectorization_mode="vector_entry_point", workers=workers, **KW
    )
    assert isinstance(vec.unwrapped, BatchedAgentVectorEnv)
    out = [[] for _ in range(N)]
    obs, info = vec.reset(seed=seed)
    for i in range(N):
        out[i].append(("reset", info["task_id"][i], obs["embeddings"][i], obs["mask"][i]))
    for t in range(STEPS):
        obs, r, term, trunc, info = vec.step(np.asarray(actions[t], dtype=np.int64))
        for i in range(N):
            if "action" not in info or not info["_action"][i]:
                out[i].append(("reset", info["task_id"][i], obs["embeddings"][i], obs["mask"][i]))
            else:
                out[i].append(
                    (
                        info["action"][i],
                        info["task_id"][i],
                        obs["embeddings"][i],
                        obs["mask"][i],
                        float(r[i]),
                        bool(term[i]),
                        bool(trunc[i]),
                    )
                )
    vec.close()
    return out


def _same(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert len(ra) == len(rb)
        for x, y in zip(ra, rb, strict=True):
            assert x[0] == y[0] and x[1] == y[1]
            np.testing.assert_array_equal(x[2], y[2])  # batched encoding is exact
            np.testing.assert_array_equal(x[3], y[3])
            assert x[4:] == pytest.approx(y[4:])


@pytest.mark.parametrize("env_id", precision_gym.ENV_IDS)
def test_same_trajectories_as_single_envs(env_id):
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, size=(STEPS, N)).tolist()
    single = _single_rollout(env_id, 11, actions)
    _same(single, _vector_rollout(env_id, 11, actions, workers=0))
    _same(single, _vector_rollout(env_id, 11, actions, workers=2))


def test_registration_spaces_and_autoreset_mode():
    vec = gym.make_vec("DMR-ALFWorld-v0", num_envs=2, vectorization_mode="vector_entry_point")
    try:
        assert vec.metadata["autoreset_mode"] == NEXT_STEP
        assert vec.single_action_space == gym.spaces.Discrete(2)
        assert vec.observation_space["embeddings"].shape == (2, 64, 384)
        obs, _ = vec.reset(seed=0, options={"task_index": [4, 5]})
        assert obs["mask"].shape == (2, 64) and vec.observation_space.contains(obs)
        assert [ep.task_index for ep in vec.unwrapped.episodes] == [4, 5]
        with pytest.raises(
            InvalidActionError, match=r"expected one tier index per env, shape \(2,\)"
        ):
            vec.step(np.array([0, 1, 1]))
        with pytest.raises(InvalidActionError, match="action must be an integer tier index"):
            vec.step(np.array([0, 7]))
    finally:
        vec.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_envs": 0}, "num_envs must be an integer >= 1, got 0"),
        ({"num_envs": 2, "workers": 3}, "workers must be <= num_envs"),
        ({"num_envs": 2, "workers": -1}, "workers must be an integer >= 0, got -1"),
        ({"num_envs": 2, "max_steps": 0}, "max_steps must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_fail_before_work(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BatchedAgentVectorEnv(**kwargs)


class CountingBackend:
    """Wraps a simulated tier and records the batch size of every generate call."""

    simulated = True
    needs_expert = True

    def __init__(self, inner):
        self.inner, self.name, self.batches, self.threads = inner, inner.name, [], []

    def generate(self, requests):
        self.batches.append(len(requests))
        self.threads.append(threading.current_thread().name)
        return self.inner.generate(requests)

    def score(self, prompt, action):
        return self.inner.score(prompt, action)

    def close(self):
        pass


def test_one_generate_call_per_tier_and_one_encoder_call_per_step():
    tiers, latency = simulated_tiers("alfworld")
    counting = [PrecisionTier(t.name, CountingBackend(t.backend)) for t in tiers]
    vec = BatchedAgentVectorEnv(num_envs=4, tiers=counting, latency=latency)
    try:
        vec.reset(seed=3)
        enc = vec.encoder
        calls = []
        original = enc.encode
        enc.encode = lambda texts: calls.append(len(texts)) or original(texts)
        for b in counting:
            b.backend.batches.clear()
        vec.step(np.array([0, 1, 1, 0]))
        assert counting[0].backend.batches == [2] and counting[1].backend.batches == [2]
        assert calls == [4]
        # in-process tiers (no ``concurrent_calls``) run one after another in this thread
        assert {t for b in counting for t in b.backend.threads} == {threading.current_thread().name}
    finally:
        vec.close()


def test_http_tiers_get_their_batches_at_once():
    """Each HTTP tier's batch goes out while the other's is in flight (so with one server per
    tier neither waits idle for the other): the server answers only once both tiers'
    requests have arrived, which one-after-another calls would never do."""
    both_in_flight = threading.Barrier(2, timeout=10)

    def reply(body):
        try:
            both_in_flight.wait()
        except threading.BrokenBarrierError:
            return 500, {"error": "the other tier's request never came"}
        return completion("look")

    server = FakeOpenAIServer(reply)
    tiers = [
        PrecisionTier(n, OpenAIBackend(server.url, "m", name=n, max_retries=0, backoff_s=0.0))
        for n in ("bf16", "w4")
    ]
    assert all(t.backend.concurrent_calls for t in tiers)
    vec = BatchedAgentVectorEnv(
        num_envs=2, tiers=tiers, latency="alfworld-qwen3-4b-awq-w4", max_retries=0
    )
    try:
        vec.reset(seed=0)
        _, _, _, _, info = vec.step(np.array([0, 1]))
        assert list(info["backend_error"]) == [None, None]
        assert list(info["tier"]) == [0, 1] and len(server.requests) == 2
    finally:
        vec.close()
        server.close()


def test_close_ends_every_worker():
    vec = BatchedAgentVectorEnv(num_envs=3, workers=2, max_steps=2)
    vec.reset(seed=0)
    procs = list(vec.tasks._procs)
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    vec.close()
    assert not any(p.is_alive() for p in procs)
    vec.close()  # idempotent
