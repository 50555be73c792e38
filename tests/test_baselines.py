from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_alfworld

from agents import ConstantTierPolicy, RandomRouter, make_baseline


def _obs(batch=None):
    shape = (64,) if batch is None else (batch, 64)
    return {"embeddings": np.zeros((*shape, 384), np.float32), "mask": np.zeros(shape, np.float32)}


def test_predict_contract_single_and_batched():
    pol = ConstantTierPolicy(2, 1)
    a, state = pol.predict(_obs())
    assert a.shape == () and int(a) == 1 and state is None
    a, _ = pol.predict(_obs(3), state=None, episode_start=np.ones(3, bool), deterministic=True)
    assert a.shape == (3,) and a.tolist() == [1, 1, 1]


def test_predict_rejects_non_env_observations():
    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    router = TransformerRouterPolicy(
        TransformerRouter(RouterConfig(d_model=8, n_layers=1, n_heads=2))
    )
    with pytest.raises(
        ValueError,
        match=r"expects the env's dict observation with keys 'embeddings' and 'mask' "
        r"\(observation_layout='dict'\), got ndarray of shape \(3,\)",
    ):
        router.predict(np.zeros(3, np.float32))


def test_baselines_run_on_every_observation_layout():
    """Fixed-tier and random routers never read the observation: vector layouts work."""
    for obs, want in ((np.zeros(384, np.float32), ()), (np.zeros((4, 24640), np.float32), (4,))):
        a, _ = ConstantTierPolicy(2, 1).predict(obs)
        assert a.shape == want and (a == 1).all()
        assert RandomRouter(2, 0.5, seed=0).predict(obs)[0].shape == want


def test_random_router_rate_and_reseeding():
    r = RandomRouter(2, p_high=0.3, seed=0)
    acts = np.concatenate([r.predict(_obs(100))[0] for _ in range(20)])
    assert abs((acts == 0).mean() - 0.3) < 0.03
    r.reset(5)
    a1 = r.predict(_obs(50))[0]
    r.reset(5)
    assert (r.predict(_obs(50))[0] == a1).all()
    with pytest.raises(ValueError, match=r"p_high must be in \[0, 1\], got 1.5"):
        RandomRouter(2, 1.5)


def test_make_baseline_errors():
    class E:
        action_space = type("S", (), {"n": 2})()

    with pytest.raises(ValueError, match="the random router needs p_high"):
        make_baseline("random", E())
    with pytest.raises(ValueError, match="unknown router 'best': expected one of"):
        make_baseline("best", E())


@requires_alfworld
def test_oracle_routes_high_exactly_where_low_would_err():
    import gymnasium as gym

    env = gym.make("DMR-ALFWorld-v0")
    oracle = make_baseline("oracle", env)
    obs, _ = env.reset(seed=0, options={"task_index": 60})
    done = False
    while not done:
        props = env.unwrapped.proposals()
        a, _ = oracle.predict(obs)
        assert int(a) == (0 if props["actions"][1] != props["expert"] else 1)
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
    assert info["won"]
