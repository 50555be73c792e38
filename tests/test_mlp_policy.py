"""agents.mlp.MLPPolicy: the portable file RLlib / CleanRL-style agents are evaluated from."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import RESET_OPTIONS
from torch import nn

from agents.mlp import MLP_CHECKPOINT_FORMAT, MLPPolicy
from precision_gym.envs.layouts import convert_observation
from precision_gym.error import CheckpointError, ConfigError
from training.policies import load_policy_file
from training.rllib_export import rllib_module_to_mlp

ENV = "DMR-WebShop-v0"


def _net(d_in=384, n=2):
    torch.manual_seed(0)
    return [nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, n)]


@pytest.mark.parametrize("layout", ["flat", "last", "mean"])
def test_save_load_round_trip_and_evaluate_from_a_dict_env(tmp_path, layout):
    env = gym.make(ENV)
    obs, _ = env.reset(seed=0, options=RESET_OPTIONS[ENV])
    d_in = 64 * 384 + 64 if layout == "flat" else 384
    policy = MLPPolicy.from_modules(_net(d_in), layout, metadata={"by": "test"})
    path = policy.save(tmp_path / "p.pt")
    loaded = load_policy_file(path, env)
    assert isinstance(loaded, MLPPolicy) and loaded.metadata == {"by": "test"}
    np.testing.assert_allclose(loaded.logits(obs), policy.logits(obs), atol=1e-6)
    x = convert_observation(obs, layout)
    assert loaded.predict(x)[0] == loaded.predict(obs)[0]  # layout or dict observation
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert loaded.predict(batch)[0].shape == (2,)
    ckpt = torch.load(path, weights_only=True)  # tensors only: nothing to unpickle
    assert ckpt["format"] == MLP_CHECKPOINT_FORMAT and ckpt["layout"] == layout


def test_stochastic_actions_follow_the_seed():
    policy = MLPPolicy.from_modules(_net(), "mean")
    obs = np.random.default_rng(0).uniform(-0.1, 0.1, (50, 384)).astype(np.float32)
    policy.reset(3)
    a = policy.predict(obs, deterministic=False)[0]
    policy.reset(3)
    assert (policy.predict(obs, deterministic=False)[0] == a).all()


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(
        ConfigError, match=r"layout must be one of \('flat', 'last', 'mean'\), got 'dict'"
    ):
        MLPPolicy.from_modules(_net(), "dict")
    with pytest.raises(ConfigError, match=r"takes Linear layers and activations .* got LSTM"):
        MLPPolicy.from_modules([nn.LSTM(4, 4)], "last")
    policy = MLPPolicy.from_modules(_net(), "last")
    with pytest.raises(ConfigError, match=r"reads 384-value 'last' observations, got shape \(7,\)"):
        policy.predict(np.zeros(7, np.float32))
    three = MLPPolicy.from_modules(_net(n=3), "last").save(tmp_path / "three.pt")
    with pytest.raises(CheckpointError, match="routes over 3 tiers, the env has 2"):
        load_policy_file(three, gym.make(ENV))
    last = MLPPolicy.from_modules(_net(), "last").save(tmp_path / "last.pt")
    with pytest.raises(
        CheckpointError, match="reads the 'last' observation layout, the env gives 'mean'"
    ):
        load_policy_file(
            last, gym.make(ENV, observation_layout="mean")
        )  # same shape, not same data
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="corrupt or not a torch file"):
        MLPPolicy.load(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="expected RLlib's default PPO RLModule"):
        rllib_module_to_mlp(nn.Linear(3, 2))
