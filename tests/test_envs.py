"""Every registered env id: check_env (Gymnasium and SB3), seeded determinism, pickling,
vector envs."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import ENV_IDS, RESET_OPTIONS, alfworld_available

ids = [
    pytest.param(
        i,
        marks=pytest.mark.skipif(
            "ALFWorld" in i and not alfworld_available(), reason="ALFWorld data not found"
        ),
    )
    for i in ENV_IDS
]
# a fixed routing sequence that mixes tiers
ACTIONS = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1]


def _rollout(env, seed, options, actions=ACTIONS):
    obs, info = env.reset(seed=seed, options=options)
    traj = [(obs["embeddings"].copy(), obs["mask"].copy(), None, info["task_id"])]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        traj.append((obs["embeddings"].copy(), obs["mask"].copy(), r, info["action"]))
        if term or trunc:
            break
    return traj


LAYOUTS = ["dict", "flat", "last", "mean"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("env_id", ids)
def test_gymnasium_check_env_without_warnings(env_id, layout):
    """Gymnasium's checker, render modes included (it rebuilds the env in each mode)."""
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, max_steps=6, observation_layout=layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    ours = [
        w for w in caught if "gymnasium" in str(w.filename) or "precision_gym" in str(w.filename)
    ]
    assert not ours, [str(w.message) for w in ours]


SB3_SEQUENCE_ADVICE = "Your observation embeddings has an unconventional shape"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("env_id", ids)
def test_sb3_check_env_without_warnings(env_id, layout):
    """The vector layouts (flat, last, mean) are silent under SB3's checker. The default
    [max_history, d] sequence layout, which the Transformer router reads, passes too, with
    only SB3's advice to flatten or use a custom policy."""
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make(env_id, max_steps=6, observation_layout=layout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_checker.check_env(env.unwrapped, warn=True)
    ours = [str(w.message) for w in caught if "stable_baselines3" in str(w.filename)]
    if layout == "dict":
        assert len(ours) == 1 and ours[0].startswith(SB3_SEQUENCE_ADVICE), ours
    else:
        assert not ours, ours


@pytest.mark.parametrize("env_id", ids)
def test_same_seed_same_trajectory(env_id):
    opts = RESET_OPTIONS[env_id]
    a = _rollout(gym.make(env_id), 7, opts)
    b = _rollout(gym.make(env_id), 7, opts)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
        assert x[2:] == y[2:]


@pytest.mark.parametrize("env_id", ids)
def test_seed_picks_task_deterministically(env_id):
    env = gym.make(env_id)
    first = [env.reset(seed=s)[1]["task_id"] for s in (1, 2, 3)]
    again = [env.reset(seed=s)[1]["task_id"] for s in (1, 2, 3)]
    assert first == again


@pytest.mark.parametrize("env_id", ids)
def test_pickle_mid_episode_continues_identically(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=3, options=RESET_OPTIONS[env_id])
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    for a in (1, 0, 1):
        o1, r1, t1, tr1, i1 = env.step(a)
        o2, r2, t2, tr2, i2 = clone.step(a)
        np.testing.assert_array_equal(o1["embeddings"], o2["embeddings"])
        assert (r1, t1, tr1, i1["action"], i1["observation"]) == (
            r2,
            t2,
            tr2,
            i2["action"],
            i2["observation"],
        )
        if t1 or tr1:
            break


@pytest.mark.parametrize("env_id", ids)
def test_sync_vector_env(env_id):
    venv = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, max_steps=3)] * 2)
    obs, info = venv.reset(seed=[0, 1])
    assert obs["embeddings"].shape[0] == 2 and obs["mask"].shape == (2, 64)
    for _ in range(4):  # crosses an autoreset
        obs, r, term, trunc, info = venv.step(np.array([0, 1]))
    assert obs["mask"].shape == (2, 64)
    venv.close()


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ids)
def test_async_vector_env(env_id):
    # "module:EnvId" makes the spawned workers import precision_gym (registration) first
    venv = gym.vector.AsyncVectorEnv(
        [lambda: gym.make(f"precision_gym:{env_id}", max_steps=3)] * 2, context="spawn"
    )
    obs, info = venv.reset(seed=[0, 1])
    obs, r, term, trunc, info = venv.step(np.array([1, 0]))
    assert obs["embeddings"].shape[:1] == (2,)
    venv.close()
