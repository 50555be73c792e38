"""Fault injection, env (issue 13, probes 7, 11, 12, 13, 15, 17): corrupt game files and
catalogues, out-of-range / wrongly typed kwargs and reset options, mismatched tiers and
routers. Each gives a clear error naming expected vs actual, and a failed reset leaves a clean
"no episode" state that step() refuses."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import ENV_IDS, RESET_OPTIONS, requires_alfworld

from precision_gym.error import ConfigError, CorruptDataError, PrecisionGymError

# ----------------------------------------------------------------------------- probe 7


def _corrupt(path: Path, how: str) -> None:
    text = path.read_text()
    if how == "truncated-json":
        path.write_text(text[: len(text) // 2])
    elif how == "bad-pddl":
        data = json.loads(text)
        data["pddl_problem"] = data["pddl_problem"].replace("(:objects", "(:objects ((", 1)
        path.write_text(json.dumps(data))
    elif how == "walkthrough-not-a-list":
        data = json.loads(text)
        data["walkthrough"] = "go to desk 1"
        path.write_text(json.dumps(data))
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.fixture(scope="module")
def two_games(tmp_path_factory):
    """A private ALFWorld data root holding copies of two valid_unseen games."""
    import os

    src = Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser()
    games = sorted((src / "json_2.1.1" / "valid_unseen").glob("*/*/game.tw-pddl"))[:2]
    root = tmp_path_factory.mktemp("alfworld")
    for g in games:
        dst = root / "json_2.1.1" / "valid_unseen" / g.parent.parent.name / g.parent.name
        shutil.copytree(g.parent, dst)
    return root


@requires_alfworld
@pytest.mark.parametrize("how", ["truncated-json", "bad-pddl", "walkthrough-not-a-list"])
def test_failed_reset_names_the_file_and_leaves_no_half_episode(two_games, tmp_path, how):
    root = tmp_path / "data"
    shutil.copytree(two_games, root)
    env = gym.make("DMR-ALFWorld-v0", task_kwargs={"data_root": str(root)})
    task = env.unwrapped.task
    bad = Path(task.games("valid_unseen")[1])
    _corrupt(bad, how)
    opts = {"split": "valid_unseen", "task_index": 0}
    env.reset(seed=1, options=opts)
    env.step(0)
    with pytest.raises(CorruptDataError, match=str(bad)) as err:
        env.reset(seed=2, options={**opts, "task_index": 1})
    assert "expected" in str(err.value)
    with pytest.raises(PrecisionGymError, match=r"no episode in progress.*last reset\(\) failed"):
        env.step(0)  # neither the previous episode nor a half-loaded new one continues
    with pytest.raises(ConfigError, match="no ALFWorld game is loaded"):
        task.step("look")
    # the env recovers: the good game replays exactly as in a fresh env
    obs, _ = env.reset(seed=1, options=opts)
    fresh = gym.make("DMR-ALFWorld-v0", task_kwargs={"data_root": str(root)})
    obs2, _ = fresh.reset(seed=1, options=opts)
    np.testing.assert_array_equal(obs["embeddings"], obs2["embeddings"])
    a, b = env.step(0), fresh.step(0)
    assert a[4]["action"] == b[4]["action"] and a[4]["observation"] == b[4]["observation"]
    env.close()
    fresh.close()


# ----------------------------------------------------------------------------- probe 11


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"cost_weight": math.nan},
            r"cost_weight \(lambda\) must be a finite number >= 0, got nan",
        ),
        (
            {"cost_weight": math.inf},
            r"cost_weight \(lambda\) must be a finite number >= 0, got inf",
        ),
        ({"cost_weight": -0.1}, r"cost_weight \(lambda\) must be a finite number >= 0, got -0.1"),
        ({"cost_weight": "0.1"}, r"cost_weight \(lambda\) must be a finite number >= 0, got '0.1'"),
        ({"max_steps": 2.5}, "max_steps must be an integer >= 1, got 2.5"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1, got 0"),
        ({"max_steps": True}, "max_steps must be an integer >= 1, got True"),
        ({"max_history": 3.0}, "max_history must be an integer >= 1, got 3.0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0, got -1"),
        ({"retry_backoff_s": math.nan}, "retry_backoff_s must be a finite number >= 0, got nan"),
        ({"flatten_embeddings": "yes"}, "flatten_embeddings must be True or False, got 'yes'"),
    ],
)
def test_bad_env_kwargs_are_refused(env_id, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gym.make(env_id, **kwargs)


# ----------------------------------------------------------------------------- probe 12


@pytest.mark.parametrize(
    ("env_id", "tiers", "task"),
    [
        ("DMR-ALFWorld-v0", "simulated:webshop", "webshop"),
        ("DMR-WebShop-v0", "simulated:alfworld", "alfworld"),
        ("DMR-WebShop-v0", "simulated:alfworld-3tier", "alfworld"),
    ],
)
def test_simulated_tiers_of_another_task_are_refused(env_id, tiers, task):
    own = "alfworld" if task == "webshop" else "webshop"
    with pytest.raises(
        ConfigError,
        match=rf"simulates the '{task}' task, but the env runs '{own}': "
        rf"expected tiers='simulated:{own}'",
    ):
        gym.make(env_id, tiers=tiers)


# ----------------------------------------------------------------------------- probe 17


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_options_are_typed(env_id):
    if env_id == "DMR-ALFWorld-v0":
        from conftest import alfworld_available

        if not alfworld_available():
            pytest.skip("ALFWorld data not found")
    env = gym.make(env_id)
    split = RESET_OPTIONS[env_id]["split"]
    for value, shown in ((1.7, "1.7"), (1.0, "1.0"), ("1", "'1'"), (True, "True"), (-1, "-1")):
        with pytest.raises(
            ConfigError, match=f"reset option task_index must be an integer >= 0, got {shown}"
        ):
            env.reset(seed=0, options={"split": split, "task_index": value})
    for value in ("no", 0, None):
        with pytest.raises(
            ConfigError, match=f"reset option charge_router must be True or False, got {value!r}"
        ):
            env.reset(seed=0, options={"split": split, "task_index": 1, "charge_router": value})
    with pytest.raises(ConfigError, match="reset option split must be a split name"):
        env.reset(seed=0, options={"split": 3})
    _, info = env.reset(seed=0, options={"split": split, "task_index": np.int64(1)})
    assert info["task_index"] == 1
    env.close()


# ----------------------------------------------------------------------------- probe 13


def _router_file(path: Path, n_tiers: int, metadata: dict) -> Path:
    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    cfg = RouterConfig(embed_dim=384, max_len=64, d_model=8, n_layers=1, n_heads=2, n_tiers=n_tiers)
    return TransformerRouterPolicy(TransformerRouter(cfg), metadata=metadata).save(path)


def test_router_of_another_env_is_refused(tmp_path):
    from training.policies import load_policy_file

    env = gym.make("DMR-WebShop-v0")
    two = ["bf16-sim", "w4-sim"]
    three = _router_file(tmp_path / "r3.pt", 3, {"tier_names": [*two, "w3-sim"]})
    with pytest.raises(
        ConfigError, match=r"routes between 3 precision tiers, but the env has 2 \['bf16-sim'"
    ):
        load_policy_file(three, env)
    alf = _router_file(tmp_path / "alf.pt", 2, {"tier_names": two, "task": "alfworld"})
    with pytest.raises(
        ConfigError, match="trained on the 'alfworld' task, but the env runs 'webshop'"
    ):
        load_policy_file(alf, env)
    names = _router_file(tmp_path / "names.pt", 2, {"tier_names": ["bf16", "w4"]})
    with pytest.raises(ConfigError, match=r"trained on tiers \['bf16', 'w4'\], but the env has"):
        load_policy_file(names, env)
    ok = _router_file(tmp_path / "ok.pt", 2, {"tier_names": two, "task": "webshop"})
    assert load_policy_file(ok, env).n_tiers == 2
    env.close()
    from conftest import run_cli

    proc = run_cli("evaluate", "--env", "DMR-WebShop-v0", "--router", str(alf), check=False)
    assert proc.returncode == 2 and "trained on the 'alfworld' task" in proc.stderr


# ----------------------------------------------------------------------------- probe 15


@pytest.mark.filterwarnings("ignore:WebShop file .* has sha256")
def test_webshop_data_of_the_wrong_schema_is_named(tmp_path, monkeypatch):
    from precision_gym.tasks.webshop import WebShopTask

    def write(folder: Path, items, ins) -> Path:
        folder.mkdir()
        (folder / "items_shuffle_1000.json").write_text(json.dumps(items))
        (folder / "items_ins_v2_1000.json").write_text(json.dumps(ins))
        return folder

    cases = [
        (["a", "b"], {}, r"items_shuffle_1000.json has the wrong schema: expected product objects"),
        ([{"title": "x"}], {}, r"record 0 is \['title'\]"),
        ([{"asin": "B0001", "name": "x"}], {"B0001": ["x"]}, r"expected asin -> object"),
        ([{"asin": "B0001", "name": "x"}], {"B0001": {"attributes": []}}, "1 products and no goal"),
    ]
    for i, (items, ins, message) in enumerate(cases):
        folder = write(tmp_path / f"d{i}", items, ins)
        monkeypatch.setenv("WEBSHOP_DATA", str(folder))
        with pytest.raises(CorruptDataError, match=message):
            WebShopTask().num_tasks("test")
