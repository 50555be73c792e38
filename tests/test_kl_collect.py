"""KL collection: compact storage, observation rebuilding, resumability, errors."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
from conftest import requires_alfworld, untrained_router_file

from precision_gym.error import CheckpointError
from training.kl_collect import CollectConfig, collect_kl, load_kl_dataset, state_kls


@pytest.fixture(scope="module")
def env():
    e = gym.make("DMR-ALFWorld-v0", max_steps=6)  # short episodes keep the test fast
    yield e
    e.close()


CFG = dict(env_id="DMR-ALFWorld-v0", split="valid_unseen", episodes=2, seed=5, shard_size=1)


@requires_alfworld
def test_collection_resumes_to_the_same_result(env, tmp_path):
    full = collect_kl(tmp_path / "full", CollectConfig(**CFG), env=env, progress=False)
    part = tmp_path / "part"
    collect_kl(part, CollectConfig(**CFG), env=env, progress=False, max_new_shards=1)
    index = json.loads((part / "index.json").read_text())
    assert list(index["shards"]) == ["0"] and not index["complete"]
    collect_kl(part, CollectConfig(**CFG), env=env, progress=False)  # resume
    a, b = load_kl_dataset(full), load_kl_dataset(part)
    for name in ("vectors", "ep_start", "episode", "t", "step", "kl", "kind", "task_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert json.loads((part / "index.json").read_text())["complete"]
    # storage: float16 vectors once per episode, t indexes them
    assert a.vectors.dtype == np.float16 and a.vectors.shape[1] == 384
    assert a.simulated and a.tier_names == ["bf16-sim", "w4-sim"] and a.kl.shape == (len(a), 1)
    assert (a.kl >= 0).all() and set(a.kind) <= {"navigation", "manipulation", "other"}
    with pytest.raises(CheckpointError, match="different configuration"):
        collect_kl(part, CollectConfig(**{**CFG, "seed": 6}), env=env, progress=False)


@requires_alfworld
def test_rebuilt_observations_match_the_env(env, tmp_path):
    """The stored (vectors, t) give back exactly the env's observation at each state, and
    the KL is the exact categorical KL of the two simulated tiers."""
    collect_kl(tmp_path / "kl", CollectConfig(**{**CFG, "episodes": 1}), env=env, progress=False)
    _replay(env, tmp_path / "kl", tier=0)


def _replay(env, folder, tier: int) -> dict:
    """Play a one-episode collection's episode again on ``env``, always on ``tier``, and check
    every stored state against the env's: the observation rebuilt from (vectors, t), the KL
    and the tier taken. Returns the last step's info."""
    from training.evaluation import episode_seed

    ds = load_kl_dataset(folder)
    ti = json.loads((folder / "index.json").read_text())["task_indices"][0]
    obs, info = env.reset(
        seed=episode_seed(5, ti), options={"split": "valid_unseen", "task_index": ti}
    )
    for row in range(len(ds)):
        rebuilt = ds.observations([row])
        np.testing.assert_array_equal(rebuilt["mask"][0], obs["mask"])
        np.testing.assert_allclose(rebuilt["embeddings"][0], obs["embeddings"], atol=1e-3)
        assert state_kls(env)[0] == pytest.approx(ds.kl[row, 0]) and ds.tier[row] == tier
        obs, _, _, _, info = env.step(tier)
    return info


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no KL collection at"):
        load_kl_dataset(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_kl_dataset(tmp_path)


@requires_alfworld
def test_two_workers_collect_the_same_data(tmp_path):
    """collect-kl --workers 2: shards rolled out side by side, written in order, the same data
    as one process."""
    from precision_gym.error import ConfigError

    cfg = CollectConfig(**{**CFG, "episodes": 3, "env_kwargs": {"max_steps": 6}})
    collect_kl(tmp_path / "one", cfg, progress=False)
    collect_kl(tmp_path / "two", cfg, progress=False, workers=2)
    a, b = load_kl_dataset(tmp_path / "one"), load_kl_dataset(tmp_path / "two")
    for name in ("vectors", "ep_start", "episode", "t", "step", "kl", "kind", "task_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index["complete"] and list(index["shards"]) == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="--workers must be an integer >= 1, got 0"):
        collect_kl(tmp_path / "bad", cfg, progress=False, workers=0)
    assert not (tmp_path / "bad").exists()  # refused before any work


@requires_alfworld
def test_two_workers_collect_the_same_data_under_a_behaviour_router(env, tmp_path):
    """collect-kl --behaviour ROUTER --workers 2: each worker loads the router file once and
    rolls out what one process does, tiers taken included."""
    cfg = CollectConfig(
        **{**CFG, "episodes": 3, "env_kwargs": {"max_steps": 6}},
        behaviour=str(untrained_router_file(env, tmp_path / "r.pt", CFG["split"], CFG["seed"])),
        behaviour_budget=0.4,
    )
    collect_kl(tmp_path / "one", cfg, progress=False)
    collect_kl(tmp_path / "two", cfg, progress=False, workers=2)
    a, b = load_kl_dataset(tmp_path / "one"), load_kl_dataset(tmp_path / "two")
    for name in ("vectors", "ep_start", "episode", "t", "step", "kl", "kind", "task_id", "tier"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert set(a.tier.tolist()) == {0, 1}  # the router routed both ways: its own routing


@requires_alfworld
def test_behaviour_router_collects_the_states_it_reaches(env, tmp_path):
    """collect-kl --behaviour: the rollout takes the router's tiers (here always-low), the
    stored observations are the env's under that router, the KLs are the same function of
    the state, and the behaviour is part of the configuration a rerun must match."""
    cfg = CollectConfig(**{**CFG, "episodes": 1}, behaviour="always-low")
    collect_kl(tmp_path / "low", cfg, env=env, progress=False)
    index = json.loads((tmp_path / "low" / "index.json").read_text())
    assert index["config"]["behaviour"] == "always-low"
    assert "behaviour_budget" not in index["config"]  # unset keys are not stored
    assert _replay(env, tmp_path / "low", tier=1)["hp_fraction"] == 0.0
    high = collect_kl(tmp_path / "high", CollectConfig(**{**CFG, "episodes": 1}), env=env,
                      progress=False)  # fmt: skip
    assert "behaviour" not in json.loads((high / "index.json").read_text())["config"]
    with pytest.raises(CheckpointError, match="differs in \\['config'\\]"):
        collect_kl(tmp_path / "low", CollectConfig(**{**CFG, "episodes": 1}), env=env,
                   progress=False)  # fmt: skip


def test_behaviour_config_errors(tmp_path):
    from precision_gym.error import ConfigError

    with pytest.raises(ConfigError, match="behaviour_budget needs behaviour"):
        CollectConfig(behaviour_budget=0.2)
    with pytest.raises(ConfigError, match=r"behaviour_budget must lie in \(0, 1\), got 1.5"):
        CollectConfig(behaviour="r.pt", behaviour_budget=1.5)
    with pytest.raises(ConfigError, match="behaviour must name a router or a baseline"):
        CollectConfig(behaviour=" ")


@requires_alfworld
def test_missing_behaviour_router_fails_before_any_write(env, tmp_path):
    cfg = CollectConfig(**CFG, behaviour=str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="neither a baseline name"):
        collect_kl(tmp_path / "kl", cfg, env=env, progress=False)
    assert not (tmp_path / "kl").exists()


@requires_alfworld
def test_collections_aggregate(env, tmp_path):
    """Several folders load as one dataset, in order (DAgger's aggregation); collections of
    different tiers, tasks or encoders are refused, naming what differs."""
    from precision_gym.error import ConfigError

    a = collect_kl(tmp_path / "a", CollectConfig(**{**CFG, "episodes": 1}), env=env,
                   progress=False)  # fmt: skip
    b = collect_kl(tmp_path / "b", CollectConfig(**{**CFG, "episodes": 1, "seed": 6},
                   behaviour="always-low"), env=env, progress=False)  # fmt: skip
    da, db = load_kl_dataset(a), load_kl_dataset(b)
    both = load_kl_dataset(f"{a},{b}")
    assert len(both) == len(da) + len(db) and both.n_episodes == 2
    assert (da.tier == 0).all() and (db.tier == 1).all()
    assert load_kl_dataset([a, b]).kl.tolist() == both.kl.tolist()
    for name in ("kl", "kind", "task_id", "step", "t"):
        np.testing.assert_array_equal(
            getattr(both, name), np.concatenate([getattr(da, name), getattr(db, name)])
        )
    rows = np.arange(len(db))
    for key in ("embeddings", "mask"):
        np.testing.assert_array_equal(
            both.observations(rows + len(da))[key], db.observations(rows)[key]
        )
    index = json.loads((b / "index.json").read_text())
    index["tier_names"] = ["bf16-sim", "w3-sim"]
    (b / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"differ in \['tier_names'\]: expected"):
        load_kl_dataset(f"{a},{b}")
    with pytest.raises(ConfigError, match="comma-separated list"):
        load_kl_dataset(f"{a},")
    comma = shutil.copytree(a, tmp_path / "kl,2")  # an existing folder is one, commas and all
    assert load_kl_dataset(str(comma)).kl.tolist() == da.kl.tolist()
