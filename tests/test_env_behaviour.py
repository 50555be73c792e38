"""MixedPrecisionAgentEnv semantics on the ALFWorld task: errors, rewards, info, faults."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import requires_alfworld

from precision_gym.backends.base import GenerationRequest
from precision_gym.cost import step_time_s
from precision_gym.envs.mixed_precision import MixedPrecisionAgentEnv
from precision_gym.error import BackendError, ConfigError, InvalidActionError, PrecisionGymError
from precision_gym.tiers import PrecisionTier, simulated_tiers

pytestmark = requires_alfworld
OPTS = {"split": "valid_unseen", "task_index": 3}
INFO_KEYS = {
    "tier",
    "tier_name",
    "action",
    "raw_output",
    "is_valid",
    "observation",
    "completion_tokens",
    "step_latency_s",
    "episode_time_s",
    "hp_fraction",
    "won",
    "task_id",
    "task_type",
    "simulated",
    "backend_error",
    "forced_steps",
    "step",
}


@pytest.fixture(scope="module")
def env():
    return gym.make("DMR-ALFWorld-v0").unwrapped


def test_reset_observation_and_info(env):
    obs, info = env.reset(seed=0, options=OPTS)
    assert obs["embeddings"].shape == (64, 384) and obs["embeddings"].dtype == np.float32
    assert obs["mask"].tolist()[:2] == [1.0, 0.0]
    assert info["task_type"] == "look_at_obj_in_light" and info["simulated"] is True
    assert env.observation_space.contains(obs)


def test_step_info_and_sparse_reward(env):
    env.reset(seed=0, options=OPTS)
    rewards, infos = [], []
    done = False
    while not done:
        _, r, term, trunc, info = env.step(0)
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    assert set(infos[0]) >= INFO_KEYS
    assert all(r == 0.0 for r in rewards[:-1])
    last = infos[-1]
    t = sum(
        step_time_s(i["completion_tokens"], i["tier"], env.latency, i["router_call"]) for i in infos
    )
    assert last["episode_time_s"] == pytest.approx(t)
    assert rewards[-1] == pytest.approx(float(last["won"]) - env.cost_weight * t)
    assert last["hp_fraction"] == 1.0
    assert infos[0]["tier_name"] == "bf16-sim"


def test_dense_reward_has_the_same_sum():
    kwargs = {"cost_weight": 0.05}
    sums = {}
    for mode in ("sparse", "dense"):
        e = gym.make("DMR-ALFWorld-v0", reward_mode=mode, **kwargs)
        e.reset(seed=5, options=OPTS)
        total, done, k = 0.0, False, 0
        while not done:
            _, r, term, trunc, info = e.step(k % 2)
            total += r
            k += 1
            done = term or trunc
        sums[mode] = total
    assert sums["dense"] == pytest.approx(sums["sparse"])


@pytest.mark.parametrize("bad", [2, -1, 1.5, "0", [0, 1]])
def test_action_outside_space(env, bad):
    env.reset(seed=0, options=OPTS)
    with pytest.raises(
        InvalidActionError,
        match=r"action must be an integer tier index in \[0, 2\) \(0=bf16-sim, 1=w4-sim\), got",
    ):
        env.step(bad)


def test_numpy_integer_actions_are_accepted(env):
    env.reset(seed=0, options=OPTS)
    env.step(np.int64(1))
    env.step(np.array([0]))


def test_step_before_reset_and_after_done():
    e = gym.make("DMR-ALFWorld-v0", max_steps=1).unwrapped
    with pytest.raises(PrecisionGymError, match="no episode in progress: call reset"):
        e.step(0)
    e.reset(seed=0, options=OPTS)
    _, _, term, trunc, _ = e.step(1)
    assert term or trunc
    with pytest.raises(PrecisionGymError, match="expected reset\\(\\) after terminated"):
        e.step(0)


def test_truncation_at_max_steps():
    e = gym.make("DMR-ALFWorld-v0", max_steps=2)
    e.reset(seed=0, options=OPTS)
    e.step(1)
    _, _, term, trunc, info = e.step(1)
    assert trunc and not term and info["step"] == 2


def test_bad_kwargs_and_options():
    with pytest.raises(ConfigError, match="reward_mode must be one of"):
        MixedPrecisionAgentEnv(reward_mode="shaped")
    with pytest.raises(ConfigError, match="max_steps must be an integer >= 1, got 0"):
        MixedPrecisionAgentEnv(max_steps=0)
    e = gym.make("DMR-ALFWorld-v0")
    with pytest.raises(ConfigError, match=r"unknown reset options \['foo'\]"):
        e.reset(options={"foo": 1})
    with pytest.raises(
        ConfigError, match=r"task_index must be in \[0, 134\) for split 'valid_unseen', got 999"
    ):
        e.reset(options={"task_index": 999})


def test_history_window_keeps_latest_steps():
    e = gym.make("DMR-ALFWorld-v0", max_history=3, max_steps=6)
    obs, _ = e.reset(seed=1, options=OPTS)
    for _ in range(5):
        obs, _, term, trunc, _ = e.step(1)
        if term or trunc:
            break
    assert obs["embeddings"].shape == (3, 384)
    assert obs["mask"].sum() == 3


class FlakyBackend:
    """Test double: fails ``failures`` times with BackendError, then delegates."""

    simulated = True

    def __init__(self, inner, failures):
        self.inner, self.failures, self.name, self.calls = inner, failures, inner.name, 0

    def generate(self, requests):
        self.calls += 1
        if self.calls <= self.failures:
            raise BackendError("connection dropped (test)")
        return self.inner.generate(requests)

    def score(self, prompt, action):
        return self.inner.score(prompt, action)

    def close(self):
        pass


def _env_with_flaky(failures, retries):
    tiers, latency = simulated_tiers("alfworld")
    tiers[1] = PrecisionTier("w4-sim", FlakyBackend(tiers[1].backend, failures))
    return MixedPrecisionAgentEnv(
        tiers=tiers, latency=latency, max_retries=retries, retry_backoff_s=0.0
    )


def test_backend_fault_is_retried():
    e = _env_with_flaky(failures=2, retries=3)
    e.reset(seed=0, options=OPTS)
    _, _, term, _, info = e.step(1)
    assert info["backend_error"] is None and info["action"]


def test_backend_fault_after_retries_ends_episode_as_failed():
    e = _env_with_flaky(failures=10, retries=2)
    e.reset(seed=0, options=OPTS)
    _, r, term, trunc, info = e.step(1)
    assert term and not info["won"]
    assert (
        "w4-sim failed after 3 attempt(s): BackendError: connection dropped"
        in info["backend_error"]
    )
    assert r == pytest.approx(-e.cost_weight * info["episode_time_s"])


def test_proposals_match_what_the_tier_does(env):
    env.reset(seed=2, options=OPTS)
    props = env.proposals()
    # the SIMULATED state model's view of the step: what the kind oracle reads
    assert props["kind"] in ("navigation", "manipulation", "other")
    assert props["derailed"] is False  # nothing has gone wrong at the first step
    hi, lo = props["critical_share"]
    assert 0.0 < hi < lo < 1.0
    _, _, _, _, info = env.step(1)
    assert info["action"] == props["actions"][1]


def test_simulated_backend_needs_context():
    tiers, _ = simulated_tiers("alfworld")
    with pytest.raises(BackendError, match="needs a StepContext with each request"):
        tiers[0].backend.generate([GenerationRequest("prompt")])
