"""Rollout workers: the same records (seeds, tasks, order) with 1 or 2 local processes and with
Ray actors on a local Ray instance started and ended here."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from precision_gym.error import ConfigError
from training.rollout_workers import RolloutSpec, run_distributed, shares

SPEC = RolloutSpec(
    env_id="DMR-ALFWorld-v0",
    split="valid_unseen",
    router="random",
    env_kwargs={"max_steps": 6},
    p_high=0.4,
)
JOBS = [(0, 0), (0, 7), (0, 15), (1, 0), (1, 7)]


@pytest.fixture(scope="module")
def sequential():
    return run_distributed(SPEC, JOBS, workers=1)


def test_shares_keep_a_task_on_one_worker_and_cover_every_job():
    assert shares(JOBS, 2) == [[0, 2, 3], [1, 4]]  # tasks 0, 15 | task 7
    assert shares(JOBS, 8) == [[0, 3], [1, 4], [2]]  # at most one worker per task
    assert shares([(0, 5)], 4) == [[0]]


def test_two_worker_processes_give_the_same_records(sequential):
    assert [(r.seed, r.task_index) for r in sequential] == JOBS
    assert run_distributed(SPEC, JOBS, workers=2) == sequential


def test_online_budget_control_needs_one_stream():
    spec = RolloutSpec(**{**SPEC.__dict__, "online_step": 0.2})
    with pytest.raises(
        ConfigError, match="expected --workers 1 and no --ray-address, got --workers 2"
    ):
        run_distributed(spec, JOBS, workers=2)
    with pytest.raises(ConfigError, match="--workers must be an integer >= 1, got 0"):
        run_distributed(SPEC, JOBS, workers=0)


@pytest.fixture
def local_ray():
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed: pip install 'precision-gym[ray]' (the ray extra)"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_actors_give_the_same_records(local_ray, sequential):
    assert run_distributed(SPEC, JOBS, workers=2, ray_address="auto") == sequential
    assert local_ray.is_initialized()  # the caller's instance is left to the caller


def test_cli_evaluate_workers_2_matches_workers_1(tmp_path):
    common = [
        "evaluate",
        "--router",
        "random",
        "--p-high",
        "0.4",
        "--episodes",
        "3",
        "--seeds",
        "0,1",
        "--env-kwargs",
        '{"max_steps": 6}',
        "--no-reference",
        "--quiet",
    ]
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.json"
        run_cli(*common, "--workers", workers, "--out", str(out))
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]
    assert outs[0]["episodes"] == 3 and len(outs[0]["per_seed"]) == 2
