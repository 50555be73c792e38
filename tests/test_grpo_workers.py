"""``train-grpo --workers N``: the batched group env gives the same curve as the Gymnasium
vector env, with 1 or 2 worker processes."""

from __future__ import annotations

import json

import pytest
import torch
from test_grpo import _cfg as grpo_cfg

from precision_gym.envs.vector import BatchedAgentVectorEnv
from precision_gym.error import ConfigError
from training.grpo import GRPOTrainer, train_grpo


def _cfg(out, **kw):
    return grpo_cfg(out, **{"tasks_per_batch": 2, "group_size": 3, **kw})


def _log(path):
    rows = [json.loads(x) for x in (path / "log.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("wall_time_s", None)
        r.pop("time_s", None)
    return [(r["env_steps"], r["mean_return"], r.get("loss"), r["hp_fraction"]) for r in rows]


@pytest.mark.parametrize("step_weight", [0.0, 1.0])  # 1.0: GiGPO's anchor keys too
def test_same_curve_whatever_the_worker_count(tmp_path, step_weight):
    logs = {}
    for workers in (0, 1, 2):
        cfg = _cfg(tmp_path / f"w{workers}", workers=workers, step_advantage_weight=step_weight)
        train_grpo(cfg)
        logs[workers] = _log(tmp_path / f"w{workers}")
    assert logs[1] == logs[0] and logs[2] == logs[0]
    assert len(logs[0]) == 2


def test_batched_group_parks_finished_members(tmp_path):
    trainer = GRPOTrainer(_cfg(tmp_path, workers=2))
    try:
        trajs = trainer.sample_group(1, [11, 12, 13], torch.Generator().manual_seed(0))
        assert isinstance(trainer.vec.unwrapped, BatchedAgentVectorEnv)
        assert trainer.env_steps == sum(len(t["act"]) for t in trajs)
        assert [ep.task_index for ep in trainer.vec.unwrapped.episodes] == [1, 1, 1]
    finally:
        trainer.close()


def test_workers_validated():
    with pytest.raises(ConfigError, match=r"workers must be in \[0, group_size=3\], got 4"):
        _cfg("x", workers=4)


def test_same_curve_with_task_engines_on_ray_actors(tmp_path):
    """train-grpo --workers 2 --ray-address: the group's task engines on 2 Ray actors of a
    local Ray instance (started and ended here): the same curve as in one process."""
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed: pip install 'precision-gym[ray]' (the ray extra)"
    )
    train_grpo(_cfg(tmp_path / "w0", workers=0))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        train_grpo(_cfg(tmp_path / "ray", workers=2, ray_address="auto"))
        assert ray.is_initialized()  # the caller's instance is left to the caller
    finally:
        ray.shutdown()
    assert _log(tmp_path / "ray") == _log(tmp_path / "w0")
    with pytest.raises(ConfigError, match=r"expected workers >= 1 \(the number of actors\), got 0"):
        _cfg("x", workers=0, ray_address="auto")
