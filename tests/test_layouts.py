"""Observation layouts (dict / flat / last / mean), the deprecated flatten_embeddings alias,
render modes and what generic tooling (SB3's make_vec_env, MaskablePPO) needs from the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import ENV_IDS, RESET_OPTIONS, alfworld_available

from precision_gym.envs.layouts import (
    LAYOUTS,
    convert_observation,
    get_layout,
    layout_of_space,
)
from precision_gym.error import ConfigError

ENV = "DMR-WebShop-v0"  # the fast env; test_envs.py runs check_env on every id x layout


def _steps(layout, n=3):
    env = gym.make(ENV, observation_layout=layout)
    obs, _ = env.reset(seed=5, options=RESET_OPTIONS[ENV])
    out = [obs]
    for a in [1, 0, 1][:n]:
        obs, *_ = env.step(a)
        out.append(obs)
    return env, out


def test_layouts_are_views_of_the_same_history():
    _, dicts = _steps("dict")
    for name in ("flat", "last", "mean"):
        env, got = _steps(name)
        assert env.observation_space.shape == {"flat": (64 * 384 + 64,)}.get(name, (384,))
        for d, o in zip(dicts, got, strict=True):
            assert env.observation_space.contains(o)
            emb, mask = d["embeddings"], d["mask"]
            n = int(mask.sum())
            want = {
                "flat": np.concatenate([emb.reshape(-1), mask]),
                "last": emb[n - 1],
                "mean": emb[:n].mean(axis=0),
            }[name]
            np.testing.assert_allclose(o, want, atol=1e-6)
            np.testing.assert_allclose(convert_observation(d, name), want, atol=1e-6)


def test_convert_observation_batched_matches_single():
    _, dicts = _steps("dict")
    batch = {k: np.stack([d[k] for d in dicts]) for k in ("embeddings", "mask")}
    for name in LAYOUTS:
        if name == "dict":
            continue
        together = convert_observation(batch, name)
        for i, d in enumerate(dicts):
            np.testing.assert_allclose(together[i], convert_observation(d, name), atol=1e-6)


def test_deprecated_dict_flat_conversion_for_older_models():
    _, dicts = _steps("dict", n=1)
    got = convert_observation(dicts[-1], "dict-flat")
    assert got["embeddings"].shape == (64 * 384,) and got["mask"].shape == (64,)
    np.testing.assert_array_equal(got["embeddings"], dicts[-1]["embeddings"].reshape(-1))
    # and back: a flattened dict converts to every layout like the [L, d] one
    np.testing.assert_allclose(
        convert_observation(got, "last"), convert_observation(dicts[-1], "last")
    )


def test_layout_of_space_recognises_every_layout():
    for name, layout in LAYOUTS.items():
        got = layout_of_space(layout.space(64, 384), 64, 384)
        assert got == ("last|mean" if name in ("last", "mean") else name)
    with pytest.raises(ConfigError, match=r"matches no observation layout .* max_history=64"):
        layout_of_space(gym.spaces.Box(-1, 1, (7,)), 64, 384)


def test_unknown_layout_is_refused_before_any_work():
    with pytest.raises(
        ConfigError,
        match=r"observation_layout must be one of \['dict', 'flat', 'last', 'mean'\], got 'image'",
    ):
        get_layout("image")
    with pytest.raises(ConfigError, match="observation_layout must be one of"):
        gym.make(ENV, observation_layout="image")


def test_flatten_embeddings_is_a_deprecated_alias_of_flat():
    with pytest.warns(DeprecationWarning, match="use observation_layout='flat'"):
        env = gym.make(ENV, flatten_embeddings=True)
    assert env.unwrapped.observation_layout == "flat"
    assert env.observation_space == get_layout("flat").space(64, 384)
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(
            ConfigError, match="flatten_embeddings=True conflicts with observation_layout='mean'"
        ),
    ):
        gym.make(ENV, flatten_embeddings=True, observation_layout="mean")


@pytest.mark.parametrize("mode", ["ansi", "human", "rgb_array"])
def test_render_modes(mode, capsys):
    env = gym.make(ENV, render_mode=mode, max_steps=4)
    env.reset(seed=0, options=RESET_OPTIONS[ENV])
    env.step(1)
    frame = env.render()
    if mode == "ansi":
        assert "> " in frame and frame.startswith("[webshop-synthetic/")
    elif mode == "human":  # printed at each step: only what is new
        out = capsys.readouterr().out
        assert frame is None and out.count("[webshop-synthetic/") == 1 and "> " in out
        env.step(1)
        assert "[webshop-synthetic/" not in capsys.readouterr().out
    else:
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
        assert (frame < 128).any() and (frame == 255).any()  # text drawn on white


def test_unknown_render_mode_is_refused():
    with (
        pytest.warns(UserWarning, match="not in the possible render_modes"),  # gymnasium's own
        pytest.raises(
            ConfigError,
            match=r"render_mode must be None or one of \['ansi', 'human', 'rgb_array'\], got 'video'",
        ),
    ):
        gym.make(ENV, render_mode="video")


@pytest.mark.parametrize(
    "env_id",
    [
        pytest.param(
            i,
            marks=pytest.mark.skipif(
                "ALFWorld" in i and not alfworld_available(), reason="ALFWorld data not found"
            ),
        )
        for i in ENV_IDS
    ],
)
def test_sb3_make_vec_env_works_unchanged(env_id):
    """SB3 passes render_mode='rgb_array' by default; nothing to work around."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs={"max_steps": 4})
    obs = venv.reset()
    assert obs["embeddings"].shape == (2, 64, 384)
    obs, reward, done, info = venv.step(np.array([0, 1]))
    assert reward.shape == (2,) and venv.render_mode == "rgb_array"
    assert venv.get_images()[0].shape == (480, 640, 3)
    venv.close()


def test_maskable_ppo_needs_no_action_masker():
    pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(ENV, n_envs=1, seed=0, env_kwargs={"observation_layout": "mean"})
    assert is_masking_supported(venv)
    assert get_action_masks(venv).tolist() == [[True, True]]
