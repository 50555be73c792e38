"""Retries in exactly one layer, bounded in attempts and in time per step (issue 12 part 3)."""

from __future__ import annotations

import time

import pytest
from net_helpers import hung_server

from precision_gym.backends.openai_backend import OpenAIBackend
from precision_gym.envs import MixedPrecisionAgentEnv
from precision_gym.envs.agent_step import GenerationFailure, RetryPolicy
from precision_gym.error import BackendError, ConfigError
from precision_gym.tiers import PrecisionTier, simulated_tiers

OPTS = {"split": "valid_unseen", "task_index": 0}


def test_hung_server_costs_at_most_the_step_deadline():
    step_timeout = 1.5
    with hung_server() as (url, conns):
        # the backend alone would wait 3 x 60 s plus backoff for one request
        tiers = [
            PrecisionTier(
                "bf16", OpenAIBackend(url, "m", name="bf16", timeout_s=60, max_retries=2)
            ),
            PrecisionTier("w4", OpenAIBackend(url, "m", name="w4", timeout_s=60, max_retries=2)),
        ]
        env = MixedPrecisionAgentEnv(
            tiers=tiers, latency="alfworld-qwen3-4b-awq-w4", step_timeout_s=step_timeout
        )
        try:
            env.reset(seed=0, options=OPTS)
            t0 = time.perf_counter()
            _, reward, term, trunc, info = env.step(1)
            elapsed = time.perf_counter() - t0
        finally:
            env.close()
        assert elapsed <= step_timeout + 1.0, elapsed
        assert term and not trunc and not info["won"]
        assert "w4 failed after 1 attempt(s): BackendError" in info["backend_error"]
        assert "got a timeout" in info["backend_error"]
        assert len(conns) == 1  # one request: the env did not retry the backend's error
        failure = env._episode.failure
        assert isinstance(failure, GenerationFailure) and failure.tier_name == "w4"
        assert reward == pytest.approx(-env.cost_weight * info["episode_time_s"])


class SelfRetryingFlaky:
    """A backend that says it retries itself: the env must call it once per step."""

    simulated = True
    needs_expert = True
    retries_faults = True

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, 0

    def generate(self, requests):
        self.calls += 1
        raise BackendError("connection dropped (test)", attempts=3)

    def score(self, prompt, action):
        return self.inner.score(prompt, action)

    def close(self):
        pass


def test_backend_that_retries_itself_is_not_retried_again():
    tiers, latency = simulated_tiers("alfworld")
    flaky = SelfRetryingFlaky(tiers[1].backend)
    tiers[1] = PrecisionTier("w4-sim", flaky)
    env = MixedPrecisionAgentEnv(tiers=tiers, latency=latency, max_retries=5, retry_backoff_s=0)
    env.reset(seed=0, options=OPTS)
    _, _, term, _, info = env.step(1)
    assert flaky.calls == 1 and term
    assert info["backend_error"].startswith("w4-sim failed after 3 attempt(s): BackendError")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_retries": -1}, "max_retries and retry_backoff_s must be >= 0, got -1"),
        ({"step_timeout_s": 0}, "step_timeout_s must be > 0 or None, got 0"),
    ],
)
def test_retry_policy_is_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RetryPolicy(**kwargs)
