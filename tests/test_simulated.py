"""The SIMULATED precision pair: exact distributions, KL shape, tier ordering, presets."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_alfworld

from precision_gym.backends.base import StepContext
from precision_gym.backends.simulated import (
    SIMULATED_PRESETS,
    SimulatedPrecisionPair,
    SimulatedPreset,
    SimulatedTierProfile,
)
from precision_gym.error import ConfigError
from precision_gym.kl import categorical_kl


def _ctx(actions=(), observations=(), experts=(), expert="take apple 1 from countertop 1"):
    admissible = (
        "go to fridge 1",
        "go to countertop 2",
        "take apple 1 from countertop 1",
        "take bread 1 from countertop 1",
        "examine countertop 1",
        "inventory",
        "look",
    )
    from precision_gym.tasks.alfworld import command_kind

    return StepContext(
        task_name="alfworld",
        task_id="t/1",
        task_type="pick_heat_then_place_in_recep",
        step=len(actions),
        actions=tuple(actions),
        observations=tuple(observations),
        admissible_commands=admissible,
        expert_command=lambda: expert,
        step_kind=command_kind,
        episode_seed=11,
        past_experts=tuple(experts),
    )


def test_categorical_kl_known_values():
    assert categorical_kl({"a": 1.0}, {"a": 1.0}) == 0.0
    p, q = {"a": 0.5, "b": 0.5}, {"a": 0.9, "b": 0.1}
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert categorical_kl(p, q) == pytest.approx(expected)
    with pytest.raises(ValueError, match="p must be a probability distribution"):
        categorical_kl({"a": 0.5}, q)


def test_distributions_are_normalised_and_tiers_are_nested():
    pair = SimulatedPrecisionPair("alfworld-3tier")
    ctx = _ctx()
    for k in range(3):
        dist = pair.distribution(k, ctx)
        assert sum(dist.values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in dist.values())
    # critical for a higher tier implies critical for every lower tier
    for e in (
        "take apple 1 from countertop 1",
        "go to fridge 1",
        "open fridge 1",
        "heat apple 1 with microwave 1",
    ):
        crit = [pair.is_critical(k, ctx, e) for k in range(3)]
        assert crit == sorted(crit)


def test_same_state_same_proposal_and_common_random_numbers():
    pair = SimulatedPrecisionPair("alfworld")
    ctx = _ctx(actions=("go to countertop 1",), observations=("You arrive at countertop 1.",))
    assert pair.propose(1, ctx) == pair.propose(
        1, _ctx(("go to countertop 1",), ("You arrive at countertop 1.",))
    )
    dists = [pair.distribution(k, ctx) for k in range(2)]
    # when the low tier proposes the expert's command, so does the high tier (it has more mass there)
    if pair.propose(1, ctx) == "take apple 1 from countertop 1":
        assert pair.propose(0, ctx) == "take apple 1 from countertop 1"
    assert dists[0]["take apple 1 from countertop 1"] >= dists[1]["take apple 1 from countertop 1"]


def test_derailment_after_a_wrong_critical_step():
    pair = SimulatedPrecisionPair("alfworld")
    critical = next(
        e
        for e in (f"take apple {i} from countertop 1" for i in range(1, 200))
        if pair.is_critical(1, _ctx(expert=e), e) and not pair.is_critical(0, _ctx(expert=e), e)
    )
    ctx = _ctx(actions=("go to fridge 1",), observations=("You arrive.",), experts=(critical,))
    assert pair.derailed(ctx)
    dist = pair.distribution(0, ctx)
    assert dist["take apple 1 from countertop 1"] == pytest.approx(
        1.0 - SIMULATED_PRESETS["alfworld"].derailed_error
    )
    clean = _ctx(actions=(critical,), observations=("You pick up.",), experts=(critical,))
    assert not pair.derailed(clean)


def test_preset_validation():
    hi = SimulatedTierProfile("hi", {"navigation": 0.01}, {"navigation": 0.5}, 0.5)
    lo = SimulatedTierProfile("lo", {"navigation": 0.01}, {"navigation": 0.1}, 0.5)
    with pytest.raises(ConfigError, match="tier 'lo' must be at least as often critical as 'hi'"):
        SimulatedPreset("bad", "", (hi, lo))
    with pytest.raises(ConfigError, match=r"critical_error must be in \(0, 1\), got 1.5"):
        SimulatedTierProfile("x", {}, {}, 1.5)
    with pytest.raises(ConfigError, match="unknown simulated preset 'nope'"):
        SimulatedPrecisionPair("nope")


def test_token_count_uses_a_real_tokenizer():
    pair = SimulatedPrecisionPair("alfworld")
    n = pair.count_tokens("take apple 1 from countertop 1")
    assert 5 <= n <= 12


@requires_alfworld
def test_kl_shape_on_high_precision_rollouts():
    """Per-step KL(high || low) is heavily skewed and bimodal on a log scale."""
    import gymnasium as gym

    env = gym.make("DMR-ALFWorld-v0").unwrapped
    kls = []
    for i in range(0, 134, 9):
        env.reset(seed=i, options={"task_index": i})
        done = False
        while not done:
            ctx = env.step_context()
            p = env.tiers[0].backend.action_distribution(ctx)
            q = env.tiers[1].backend.action_distribution(ctx)
            kls.append(categorical_kl(p, q))
            _, _, term, trunc, _ = env.step(0)
            done = term or trunc
    kls = np.array(kls)
    assert (kls < 0.01).mean() > 0.6, np.quantile(kls, [0.5, 0.9])
    assert 0.05 < (kls > 1.0).mean() < 0.4
    # sparse plateau between the modes
    assert ((kls > 0.05) & (kls < 0.5)).mean() < 0.05


@requires_alfworld
def test_tier_ordering_on_valid_unseen():
    """The BF16-like tier succeeds well above the low tier (same tasks, same seeds)."""
    import gymnasium as gym

    from agents import make_baseline
    from training.evaluation import evaluate

    env = gym.make("DMR-ALFWorld-v0")
    idx = list(range(3, 134, 13))  # 11 tasks across all six task types
    res = {
        name: evaluate(make_baseline(name, env), env, task_indices=idx, seeds=[0], progress=False)
        for name in ("always-high", "always-low")
    }
    high = res["always-high"].summary()["success_rate"]
    low = res["always-low"].summary()["success_rate"]
    assert high >= 0.8 and high - low >= 0.2, (high, low)
