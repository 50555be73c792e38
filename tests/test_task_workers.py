"""Task slots in worker processes: the expert command computed ahead (while the driver encodes)
is the one asked for later, a step or reset drops it, an error in it is raised where the command
is asked for, and the forced-high flag comes back with the step (no second round trip)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from precision_gym.envs.agent_step import LocalTaskSlots
from precision_gym.envs.mixed_precision import make_task
from precision_gym.envs.task_workers import WorkerTaskSlots
from precision_gym.envs.vector import BatchedAgentVectorEnv

SPLIT = {"alfworld": "valid_unseen", "webshop": "eval"}
TASKS = list(SPLIT)


def _copies(name: str, n: int):
    proto = make_task(name, {})
    return proto, [copy.deepcopy(proto) for _ in range(n)]


def _first_command(slots, slot: int) -> str:
    return slots.expert_commands([slot])[0]


@pytest.mark.parametrize("name", TASKS)
def test_prefetched_expert_is_the_lazy_one_and_a_step_drops_it(name):
    _, tasks = _copies(name, 1)
    slots = LocalTaskSlots(tasks)
    slots.reset([(0, SPLIT[name], 3)])
    calls = []
    original = tasks[0].expert_command
    tasks[0].expert_command = lambda: calls.append(1) or original()
    slots.prefetch_experts([0])
    assert len(calls) == 1
    first = _first_command(slots, 0)
    assert first == original() and len(calls) == 1  # served from the prefetch
    slots.prefetch_experts([0])
    assert len(calls) == 1  # kept: nothing changed the state
    slots.step([(0, first)])
    nxt = _first_command(slots, 0)  # the step dropped the old answer: computed anew
    assert len(calls) == 2 and nxt == original()


def test_an_error_in_the_prefetch_is_raised_where_the_command_is_asked():
    _, tasks = _copies("alfworld", 1)
    slots = LocalTaskSlots(tasks)
    slots.reset([(0, "valid_unseen", 0)])

    def broken():
        raise RuntimeError("planner exploded")

    tasks[0].expert_command = broken
    slots.prefetch_experts([0])  # does not raise here
    with pytest.raises(RuntimeError, match="planner exploded"):
        slots.expert_commands([0])


@pytest.mark.parametrize("name", TASKS)
def test_workers_answer_like_local_slots_with_one_round_trip_per_step(name):
    proto, copies = _copies(name, 3)
    local = LocalTaskSlots(copies)
    workers = WorkerTaskSlots(proto, 3, 2)
    try:
        exchanges = []
        original = workers._exchange
        workers._exchange = lambda cmd, parts: exchanges.append(cmd) or original(cmd, parts)
        items = [(i, SPLIT[name], 5 + i) for i in range(3)]
        assert [s.observation.text for s in workers.reset(items)] == [
            s.observation.text for s in local.reset(items)
        ]
        for _ in range(2):
            workers.prefetch_experts([0, 1, 2])  # posted: no answer awaited
            assert exchanges[-1] == "reset_flags" or exchanges[-1] == "step_flags"
            experts = workers.expert_commands([0, 1, 2])
            assert experts == local.expert_commands([0, 1, 2])
            assert workers.forced_pending([0, 1, 2]) == local.forced_pending([0, 1, 2])
            assert exchanges[-1] == "expert_commands"  # the flags came with the step
            moves = [(i, e) for i, e in enumerate(experts) if e is not None]
            got = workers.step(moves)
            assert [o.text for o in got] == [o.text for o in local.step(moves)]
    finally:
        workers.close()


def test_a_failed_prefetch_sends_no_answer_that_a_later_call_would_read():
    proto, copies = _copies("alfworld", 2)
    local = LocalTaskSlots(copies)
    workers = WorkerTaskSlots(proto, 2, 2)
    try:
        items = [(i, "valid_unseen", i) for i in range(2)]
        workers.reset(items)
        local.reset(items)
        workers._post("prefetch_experts", {0: None, 1: None})  # fails inside each worker
        assert workers.expert_commands([0, 1]) == local.expert_commands([0, 1])
    finally:
        workers.close()


def test_vector_env_with_workers_prefetches_the_simulated_experts():
    vec = BatchedAgentVectorEnv(num_envs=2, workers=2, max_steps=3)
    try:
        posted = []
        original = vec.tasks._post
        vec.tasks._post = lambda cmd, parts: posted.append(cmd) or original(cmd, parts)
        vec.reset(seed=0)
        assert posted == ["prefetch_experts"]  # the simulated tiers read the expert command
    finally:
        vec.close()


def test_the_driver_encodes_on_the_cores_of_its_waiting_workers(monkeypatch):
    """One encoder call per reset and step, with as many threads as there are local worker
    processes (up to the cores); tasks in the driver's own process leave it one thread."""
    from precision_gym.embedding import SentenceEncoder
    from precision_gym.threads import available_cores

    calls = []
    original = SentenceEncoder.encode

    def spy(self, texts, *, threads=1):
        calls.append(threads)
        return original(self, texts, threads=threads)

    monkeypatch.setattr(SentenceEncoder, "encode", spy)
    for workers, expected in ((0, 1), (2, min(2, available_cores()))):
        calls.clear()
        vec = BatchedAgentVectorEnv(num_envs=2, workers=workers, max_steps=3)
        try:
            assert vec.tasks.encode_threads == expected
            vec.reset(seed=0)
            vec.step(np.array([0, 1]))
        finally:
            vec.close()
        assert calls == [expected, expected]


def _play(vec, steps: int):
    obs, info = vec.reset(seed=4)
    rows = [(obs["embeddings"].copy(), list(info["task_id"]))]
    for t in range(steps):
        obs, r, term, trunc, info = vec.step(np.array([t % 2, 1 - t % 2]))
        rows.append((obs["embeddings"].copy(), r.tolist(), term.tolist(), list(info["action"])))
    return rows


def test_ray_actor_slots_give_the_trajectories_of_local_slots(local_ray):
    kw = {"num_envs": 2, "max_steps": 4}
    local = BatchedAgentVectorEnv(workers=0, **kw)
    ray_vec = BatchedAgentVectorEnv(workers=2, ray_address="auto", **kw)
    try:
        assert type(ray_vec.tasks).__name__ == "RayTaskSlots"
        for a, b in zip(_play(local, 3), _play(ray_vec, 3), strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:] == b[1:]
    finally:
        local.close()
        ray_vec.close()
    assert local_ray.is_initialized()  # the caller's instance is left to the caller


def test_engines_are_built_with_the_env_not_on_its_first_episode(monkeypatch):
    """A missing engine fails when the env is built, and the first reset pays no import."""
    import gymnasium as gym

    from precision_gym.error import DataNotFoundError
    from precision_gym.tasks.alfworld import ALFWorldTask

    env = gym.make("DMR-ALFWorld-v0")
    task = env.unwrapped.task
    engine = task._engine
    assert engine is not None  # built before any reset
    task.warm_up()
    assert task._engine is engine  # idempotent
    env.close()

    def no_engine(self):
        raise DataNotFoundError("the ALFWorld task needs the 'alfworld' package")

    monkeypatch.setattr(ALFWorldTask, "_make_engine", no_engine)
    with pytest.raises(DataNotFoundError, match="needs the 'alfworld' package"):
        gym.make("DMR-ALFWorld-v0")
