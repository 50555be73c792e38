"""One name per concept: the new names work, and every old public name still works for one
release with a DeprecationWarning that names its replacement."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import RESET_OPTIONS

from agents import ConstantTierPolicy, RandomRouter
from agents.base import RouterPolicy, charges_router
from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy
from precision_gym.cost import PRESETS, episode_time_s, step_time_s
from precision_gym.prompting.alfworld import ALFWorldReActPrompter
from precision_gym.prompting.base import TextPrompter
from precision_gym.prompting.webshop import WebShopPrompter
from training.policies import load_policy

ENV = "DMR-WebShop-v0"
COEFFS = PRESETS["alfworld-qwen3-4b-awq-w4"]


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("precision_gym.prompting", "TextAgent", TextPrompter),
        ("precision_gym.prompting.base", "TextAgent", TextPrompter),
        ("precision_gym.prompting.alfworld", "ALFWorldReActAgent", ALFWorldReActPrompter),
        ("precision_gym.prompting.webshop", "WebShopAgent", WebShopPrompter),
    ],
)
def test_old_prompter_class_names_are_the_new_classes(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated.*use {module}\."):
        assert getattr(mod, old) is new
    with pytest.raises(AttributeError, match=f"module '{module}' has no attribute 'Nope'"):
        mod.Nope  # noqa: B018


def test_make_agent_is_make_prompter():
    from precision_gym.envs import mixed_precision

    with pytest.warns(DeprecationWarning, match="make_agent is deprecated.*make_prompter"):
        assert mixed_precision.make_agent is mixed_precision.make_prompter


def test_env_prompter_kwarg_and_deprecated_agent_alias():
    prompter = WebShopPrompter(history_length=1)
    env = gym.make(ENV, prompter=prompter).unwrapped
    assert env.prompter is prompter
    with pytest.warns(DeprecationWarning, match=r"MixedPrecisionAgentEnv.agent is deprecated"):
        assert env.agent is prompter
    with pytest.warns(DeprecationWarning, match=r"MixedPrecisionAgentEnv\(agent=\.\.\.\)"):
        old = gym.make(ENV, agent=prompter).unwrapped
    assert old.prompter is prompter
    assert isinstance(gym.make(ENV).unwrapped.prompter, WebShopPrompter)  # the task's default


def test_charge_router_in_info_cost_and_old_info_key():
    env = gym.make(ENV)
    env.reset(seed=0, options={**RESET_OPTIONS[ENV], "charge_router": False})
    info = env.step(0)[4]
    assert info["charge_router"] is False and info["router_call"] is False
    env.reset(seed=0, options=RESET_OPTIONS[ENV])
    info = env.step(1)[4]
    assert info["charge_router"] is True and info["router_call"] is True
    expected = step_time_s(info["completion_tokens"], 1, env.unwrapped.latency, True)
    assert info["step_latency_s"] == pytest.approx(expected)
    ep = env.unwrapped._episode
    assert ep.charge_router_per_step[-1] is True
    with pytest.warns(DeprecationWarning, match="Episode.router_calls is deprecated"):
        assert ep.router_calls is ep.charge_router_per_step


def test_cost_functions_take_the_old_keyword_with_a_warning():
    tokens_only = 10 * COEFFS.ms_per_token[1] / 1000.0
    assert step_time_s(10, 1, COEFFS, charge_router=False) == pytest.approx(tokens_only)
    with pytest.warns(DeprecationWarning, match=r"step_time_s\(router_call=\.\.\.\).*charge_r"):
        assert step_time_s(10, 1, COEFFS, router_call=False) == pytest.approx(tokens_only)
    new = episode_time_s([10, 4], [0, 1], COEFFS, charge_router=[True, False])
    with pytest.warns(DeprecationWarning, match=r"episode_time_s\(router_calls=\.\.\.\)"):
        assert episode_time_s([10, 4], [0, 1], COEFFS, router_calls=[True, False]) == new


def test_policy_charge_router_attribute_and_old_name():
    assert TransformerRouterPolicy.charge_router is True
    assert ConstantTierPolicy(2, 0).charge_router is False
    with pytest.warns(DeprecationWarning, match="ConstantTierPolicy.charges_router_cost"):
        assert ConstantTierPolicy(2, 0).charges_router_cost is False

    with pytest.warns(DeprecationWarning, match="OldStyle.charges_router_cost is deprecated"):

        class OldStyle(RouterPolicy):  # a user policy written against the old name
            charges_router_cost = True

            def _predict_batch(self, obs, deterministic):
                return np.zeros(len(obs["mask"]), dtype=np.int64)

    assert OldStyle.charge_router is True and charges_router(OldStyle(2)) is True

    class DuckOld:  # not a RouterPolicy: read by the evaluator through charges_router()
        charges_router_cost = False

    with pytest.warns(DeprecationWarning, match="DuckOld.charges_router_cost"):
        assert charges_router(DuckOld()) is False
    assert charges_router(object()) is True  # a learned policy of another library


def _router_file(tmp_path):
    torch.manual_seed(0)
    cfg = RouterConfig(d_model=32, n_layers=1, n_heads=2, dropout=0.0)
    policy = TransformerRouterPolicy(TransformerRouter(cfg), thresholds={"0.4": 0.3})
    return policy.save(tmp_path / "router.pt")


def test_one_policy_loader_and_its_deprecated_paths(tmp_path):
    env = gym.make(ENV)
    path = _router_file(tmp_path)
    router = load_policy(path, env, budget=0.4, online_step=0.2)
    assert isinstance(router, TransformerRouterPolicy)
    assert router.threshold == 0.3 and router.online is not None
    rnd = load_policy("random", env, p_high=0.3, seed=1)
    assert isinstance(rnd, RandomRouter) and rnd.p_high == 0.3
    with pytest.raises(FileNotFoundError, match="neither a baseline name"):
        load_policy(tmp_path / "nope.pt", env)
    with pytest.raises(ValueError, match="--online-step needs --budget K"):
        load_policy(path, env, online_step=0.2)
    assert TransformerRouterPolicy.load(path, budget=0.4, online_step=0.2).online is not None

    import training.cli
    import training.cli.common
    from agents.router import load_router_policy
    from training.policies import load_policy_file

    # the command line's helper name is the same function, not another hop
    assert training.cli.load_policy is training.cli.common.load_policy is load_policy
    with pytest.warns(DeprecationWarning, match="load_policy_file is deprecated.*load_policy"):
        assert load_policy_file(path, env, budget=0.4).threshold == 0.3
    with pytest.warns(DeprecationWarning, match="load_router_policy is deprecated"):
        assert load_router_policy(path, budget=0.4, online_step=0.2).online is not None


def test_score_shift_reports_hp_fraction_and_the_old_keys():
    from training.calibrate import score_shift

    s = score_shift(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0.1, 0.2, 0.3, 0.6]))
    assert s["train_hp_fraction"] == 0.5 and s["calib_hp_fraction"] == 0.25
    assert s["train_frac_high"] == s["train_hp_fraction"]
    assert s["calib_frac_high"] == s["calib_hp_fraction"]


def test_old_and_new_keyword_together_are_refused():
    from precision_gym.error import ConfigError

    with pytest.raises(ConfigError, match="got both charge_router= and its deprecated name"):
        step_time_s(10, 1, COEFFS, charge_router=False, router_call=True)
    with pytest.raises(
        ConfigError, match=r"MixedPrecisionAgentEnv got both prompter= and .*agent="
    ):
        gym.make(ENV, prompter=WebShopPrompter(), agent=WebShopPrompter())
