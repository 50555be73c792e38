"""``precision-gym evaluate`` on SB3-family archives: the algorithm class is detected from the
archive's JSON (nothing unpickled), recurrent state and episode_start are carried across
decisions, MaskablePPO needs no ActionMasker, and what cannot be run is refused."""

from __future__ import annotations

import json
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import run_cli

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib", reason="sb3-contrib not installed (pip install sb3-contrib)")

from stable_baselines3.common.env_util import make_vec_env

from precision_gym.error import CheckpointError
from training.evaluation import episode_seed
from training.policies import SB3Policy, detect_sb3_algo, load_policy_file

ENV = "DMR-WebShop-v0"
LAST = {"observation_layout": "last", "max_steps": 8}


@pytest.fixture(scope="module")
def recurrent_zip(tmp_path_factory):
    from sb3_contrib import RecurrentPPO

    venv = make_vec_env(ENV, n_envs=1, seed=0, env_kwargs=LAST)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        venv,
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"lstm_hidden_size": 16, "net_arch": [16]},
    )
    model.learn(64)
    # 64 steps leave the LSTM's features tiny next to the heads' biases (one tier
    # everywhere); stronger LSTM weights and zero head biases make the routing hinge on the
    # LSTM state, so the state test below discriminates
    policy = model.policy
    with torch.no_grad():
        policy.lstm_actor.weight_ih_l0.mul_(20.0)
        policy.lstm_actor.weight_hh_l0.mul_(4.0)
        policy.mlp_extractor.policy_net[0].bias.zero_()
        policy.action_net.bias.zero_()
    path = tmp_path_factory.mktemp("rppo") / "recurrent.zip"
    model.save(path)
    venv.close()
    return path


def _by_hand(path, records, carry_state=True):
    """Step the model by hand, carrying (or dropping) its LSTM state."""
    from sb3_contrib import RecurrentPPO

    model = RecurrentPPO.load(path, device="cpu")
    env = gym.make(ENV, **LAST)
    out = []
    for rec in records:
        obs, _ = env.reset(
            seed=episode_seed(rec["seed"], rec["task_index"]),
            options={"split": "test", "task_index": rec["task_index"]},
        )
        state, start, tiers, done = None, np.ones(1, bool), [], False
        while not done:
            action, state = model.predict(
                obs, state=state if carry_state else None, episode_start=start, deterministic=True
            )
            start = np.zeros(1, bool)
            tiers.append(int(action))
            obs, _, term, trunc, _ = env.step(tiers[-1])
            done = term or trunc
        out.append(tiers)
    return out


def test_recurrent_ppo_through_the_cli_carries_its_state(recurrent_zip, tmp_path):
    assert detect_sb3_algo(recurrent_zip).qualname == "sb3_contrib.RecurrentPPO"
    out = tmp_path / "eval.json"
    run_cli(
        "evaluate", "--env", ENV, "--env-kwargs", json.dumps(LAST), "--router",
        str(recurrent_zip), "--split", "test", "--episodes", "3", "--seeds", "0,1",
        "--no-reference", "--quiet", "--out", str(out), "--trust-checkpoint",
    )  # fmt: skip
    summary = json.loads(out.read_text())
    assert summary["router"] == "sb3-recurrentppo:recurrent"
    records = summary["records"]
    assert len(records) == 6 and all(r["tiers"] for r in records)
    cli = [r["tiers"] for r in records]
    assert {t for tiers in cli for t in tiers} == {0, 1}  # both tiers routed
    assert cli == _by_hand(recurrent_zip, records, carry_state=True)
    # the state matters for this policy: dropping it at every decision routes differently
    assert cli != _by_hand(recurrent_zip, records, carry_state=False)


def test_recurrent_policy_refuses_an_ambiguous_layout(recurrent_zip):
    """A [d] vector model may read 'last' or 'mean': a dict-layout env must say which."""
    env = gym.make(ENV)
    with pytest.raises(CheckpointError, match="layout 'last' or 'mean'"):  # at load time
        load_policy_file(recurrent_zip, env, trust_checkpoint=True)
    policy = load_policy_file(
        recurrent_zip, gym.make(ENV, observation_layout="last"), trust_checkpoint=True
    )
    obs, _ = env.reset(seed=0)
    with pytest.raises(CheckpointError, match="layout 'last' or 'mean'"):
        SB3Policy(policy.model).predict(obs)
    # told the layout, it converts the dict observation itself
    policy = SB3Policy(policy.model, layout="last")
    action, state = policy.predict(obs, episode_start=np.ones(1, bool))
    assert action.shape == () and state is not None


def test_maskable_ppo_trains_without_action_masker_and_evaluates(tmp_path):
    from sb3_contrib import MaskablePPO

    venv = make_vec_env(ENV, n_envs=1, seed=0, env_kwargs={"observation_layout": "mean"})
    model = MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(32)
    model.save(tmp_path / "maskable.zip")
    assert detect_sb3_algo(tmp_path / "maskable.zip").qualname == "sb3_contrib.MaskablePPO"
    env = gym.make(ENV, observation_layout="mean", max_steps=4)
    policy = load_policy_file(tmp_path / "maskable.zip", env, trust_checkpoint=True)
    obs, _ = env.reset(seed=0)
    action, _ = policy.predict(obs)
    assert env.action_space.contains(np.int64(action))


def test_detection_of_every_discrete_algorithm(tmp_path):
    import sb3_contrib
    import stable_baselines3 as sb3

    env = gym.make("CartPole-v1")  # the archive format does not depend on the env
    algos = {
        "PPO": sb3.PPO, "A2C": sb3.A2C, "DQN": sb3.DQN, "QRDQN": sb3_contrib.QRDQN,
        "TRPO": sb3_contrib.TRPO, "ARS": sb3_contrib.ARS,
    }  # fmt: skip
    for name, cls in algos.items():
        policy = "LinearPolicy" if name == "ARS" else "MlpPolicy"
        cls(policy, env, device="cpu").save(tmp_path / name)
        algo = detect_sb3_algo(tmp_path / f"{name}.zip", n_tiers=2)
        assert algo.cls == name and algo.load_class() is cls
        assert not algo.recurrent


def test_models_it_cannot_run_are_refused(tmp_path):
    import stable_baselines3 as sb3

    sb3.SAC("MlpPolicy", gym.make("Pendulum-v1"), device="cpu").save(tmp_path / "sac")
    with pytest.raises(
        CheckpointError, match=r"is SAC with action space .*Box.*expected a Discrete"
    ):
        detect_sb3_algo(tmp_path / "sac.zip")
    sb3.PPO("MlpPolicy", gym.make("CartPole-v1"), device="cpu").save(tmp_path / "ppo")
    with pytest.raises(CheckpointError, match=r"Discrete\(2\) actions, the env has 3 tiers"):
        detect_sb3_algo(tmp_path / "ppo.zip", n_tiers=3)
    # a custom policy class: refused, not guessed
    with zipfile.ZipFile(tmp_path / "ppo.zip") as zf:
        data = json.loads(zf.read("data"))
    data["policy_class"]["__module__"] = "my_lab.policies"
    with zipfile.ZipFile(tmp_path / "custom.zip", "w") as zf:
        zf.writestr("data", json.dumps(data))
    with pytest.raises(CheckpointError, match=r"policy class from 'my_lab\.policies'"):
        detect_sb3_algo(tmp_path / "custom.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable zip archive"):
        detect_sb3_algo(tmp_path / "junk.zip")
    # through the CLI: a clear message and a non-zero exit, before any episode runs
    proc = run_cli("evaluate", "--env", ENV, "--router", str(tmp_path / "sac.zip"), check=False)
    assert proc.returncode != 0 and "continuous-action algorithms cannot route" in proc.stderr


def test_flat_layout_model_is_fed_from_a_dict_env(tmp_path):
    """A model trained on the flat layout evaluates on the default (dict) env."""
    import stable_baselines3 as sb3

    venv = make_vec_env(ENV, n_envs=1, seed=0, env_kwargs={"observation_layout": "flat"})
    model = sb3.PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, device="cpu")
    model.save(tmp_path / "flat.zip")
    dict_env, flat_env = gym.make(ENV), gym.make(ENV, observation_layout="flat")
    policy = load_policy_file(tmp_path / "flat.zip", dict_env, trust_checkpoint=True)
    d_obs, _ = dict_env.reset(seed=1)
    f_obs, _ = flat_env.reset(seed=1)
    want, _ = model.predict(f_obs, deterministic=True)
    assert policy.predict(d_obs)[0] == want
    assert (
        load_policy_file(tmp_path / "flat.zip", flat_env, trust_checkpoint=True).predict(f_obs)[0]
        == want
    )
    with pytest.raises(CheckpointError, match="make the env in the model's observation_layout"):
        load_policy_file(
            tmp_path / "flat.zip", gym.make(ENV, observation_layout="mean"), trust_checkpoint=True
        )
