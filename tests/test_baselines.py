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


class _FakeEnv:
    """Just what KindOracleRouter reads: an action space and proposals()."""

    def __init__(self, n_tiers, props):
        import gymnasium as gym

        self.action_space = gym.spaces.Discrete(n_tiers)
        self.props = props

    def proposals(self):
        return self.props


@pytest.mark.parametrize(
    ("shares", "derailed", "expert", "min_share", "want"),
    [
        ([0.01, 0.06], False, "go to desk 1", 0.0, 0),  # 0 = every live step high
        ([0.01, 0.06], False, "go to desk 1", 0.1, 1),  # navigation: under the bar, low
        ([0.04, 0.30], False, "take pen 1 from desk 1", 0.1, 0),  # manipulation: high
        ([0.04, 0.30], True, "take pen 1 from desk 1", 0.1, 1),  # derailed: low
        ([0.04, 0.30], False, None, 0.0, 1),  # nothing left to do: low
        ([0.01, 0.06, 0.10], False, "go to desk 1", 0.08, 1),  # 3 tiers: the W4 tier is safe
        ([0.04, 0.30, 0.42], False, "take pen 1 from desk 1", 0.08, 0),
        ([0.01, 0.06, 0.10], False, "go to desk 1", 0.2, 2),
    ],
)
def test_kind_oracle_rule(shares, derailed, expert, min_share, want):
    props = {"expert": expert, "actions": [], "kind": "k", "critical_share": shares}
    env = _FakeEnv(len(shares), {**props, "derailed": derailed})
    a, _ = make_baseline("kind-oracle", env, min_share=min_share).predict(_obs())
    assert int(a) == want


def test_kind_oracle_errors():
    env = _FakeEnv(2, {"expert": "look", "actions": ["look", "look"]})
    with pytest.raises(ValueError, match=r"needs SIMULATED tiers' state model .* got proposals"):
        make_baseline("kind-oracle", env).predict(_obs())
    with pytest.raises(ValueError, match=r"min_share must be in \[0, 1\], got 1.5"):
        make_baseline("kind-oracle", env, min_share=1.5)
    with pytest.raises(ValueError, match="expected a batch of 1 observation, got 2"):
        make_baseline("kind-oracle", env).predict(_obs(2))


def test_kind_oracle_plays_by_its_rule_on_webshop():
    """On a real (SIMULATED-tier) env: each step's tier is the rule applied to proposals(),
    and the per-state oracle's chances are the preset's shares for the step's kind."""
    import gymnasium as gym

    env = gym.make("DMR-WebShop-v0", task_kwargs={"force_high_on_search": False})
    router = make_baseline("kind-oracle", env, min_share=0.1)
    kinds = set()
    for task in range(3):
        obs, _ = env.reset(seed=task, options={"split": "test", "task_index": task})
        done = False
        while not done:
            props = env.unwrapped.proposals()
            shares = props["critical_share"]
            assert shares[0] <= shares[1]  # lower precision: at least as often critical
            kinds.add(props["kind"])
            live = props["expert"] is not None and not props["derailed"]
            a, _ = router.predict(obs)
            assert int(a) == (0 if live and shares[1] >= 0.1 else 1)
            obs, _, term, trunc, _ = env.step(a)
            done = term or trunc
    assert {"search", "click"} <= kinds
    env.close()


@pytest.mark.parametrize(
    ("inner_tier", "derailed", "expert", "want"),
    [
        (0, False, "go to desk 1", 0),  # live: the inner router's tier
        (1, False, "go to desk 1", 1),
        (0, True, "take pen 1 from desk 1", 1),  # derailed: the lowest tier
        (0, False, None, 1),  # nothing left to do: the lowest tier
    ],
)
def test_low_when_derailed_wraps_the_inner_router(inner_tier, derailed, expert, want):
    from agents import LowWhenDerailed

    env = _FakeEnv(2, {"expert": expert, "actions": [], "derailed": derailed})
    router = LowWhenDerailed(ConstantTierPolicy(2, inner_tier), env)
    a, _ = router.predict(_obs())
    assert int(a) == want
    assert router.name.endswith("+ low-when-derailed")
    assert router.charge_router is False  # a fixed tier costs no router time, wrapped or not


def test_low_when_derailed_errors():
    from agents import LowWhenDerailed

    env = _FakeEnv(2, {"expert": "look", "actions": ["look", "look"]})
    with pytest.raises(ValueError, match=r"needs SIMULATED tiers' state model .* got proposals"):
        LowWhenDerailed(ConstantTierPolicy(2, 0), env).predict(_obs())
    with pytest.raises(ValueError, match="inner router has 3 tiers, the env 2: expected equal"):
        LowWhenDerailed(ConstantTierPolicy(3, 0), env)


def test_kind_oracle_pays_the_router_time_a_router_would():
    """The kind oracle stands in for a router, so by default each step pays the router's
    per-call time; ``charge_router=False`` plays the same tiers without it."""
    import gymnasium as gym

    from training.evaluation import rollout

    env = gym.make("DMR-WebShop-v0")
    charged = make_baseline("kind-oracle", env)
    free = make_baseline("kind-oracle", env, charge_router=False)
    assert (charged.name, free.name) == (
        "kind-oracle(share>=0)", "kind-oracle(share>=0,no router time)"
    )  # fmt: skip
    a, b = (rollout(env, r, seed=0, task_index=1, split="test") for r in (charged, free))
    assert a.tiers == b.tiers and a.decisions > 0
    router_s = env.unwrapped.latency.router_ms_per_call / 1000.0
    assert a.episode_time_s - b.episode_time_s == pytest.approx(a.decisions * router_s)
