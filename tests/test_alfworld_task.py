from __future__ import annotations

import pickle

import pytest
from conftest import requires_alfworld

from precision_gym.error import ConfigError, CorruptDataError, DataNotFoundError
from precision_gym.tasks.alfworld import (
    HELDOUT_SCENES,
    TASK_TYPES,
    ALFWorldTask,
    command_kind,
    scene_of,
    task_type_of,
)


@pytest.fixture(autouse=True)
def _fresh_shared_plans():
    """Each test plans for itself: the process-wide plan memo starts empty."""
    from precision_gym.tasks.alfworld import _SHARED_PLANS

    _SHARED_PLANS.clear()
    yield
    _SHARED_PLANS.clear()


def test_missing_data_error_says_where_and_how(tmp_path):
    task = ALFWorldTask(data_root=tmp_path / "nowhere")
    with pytest.raises(
        DataNotFoundError,
        match=r"ALFWorld game files not found: expected .*nowhere/json_2\.1\.1/<split>/\*/\*/game\.tw-pddl .*alfworld-download",
    ):
        task.num_tasks("valid_unseen")


def test_unknown_task_type():
    with pytest.raises(ConfigError, match=r"unknown ALFWorld task types \['pick_up'\]"):
        ALFWorldTask(task_types=["pick_up"])


def test_command_kind():
    assert command_kind("go to fridge 1") == "navigation"
    for cmd in (
        "take apple 1 from countertop 1",
        "move apple 1 to fridge 1",
        "heat egg 1 with microwave 1",
        "open drawer 2",
        "use desklamp 1",
        "examine book 1",
    ):
        assert command_kind(cmd) == "manipulation"
    assert command_kind("inventory") == "other"


@requires_alfworld
def test_unknown_split_lists_available():
    with pytest.raises(
        DataNotFoundError,
        match=r"unknown split 'valid_seenX' for task 'alfworld': expected one of \[",
    ):
        ALFWorldTask().num_tasks("valid_seenX")


@requires_alfworld
def test_splits_types_and_filter():
    task = ALFWorldTask()
    assert {"train", "valid_train", "valid_unseen"} <= set(task.splits())
    assert task.num_tasks("valid_unseen") == 134
    heat = ALFWorldTask(task_types=["pick_heat_then_place_in_recep"])
    games = heat.games("valid_unseen")
    assert games and all(task_type_of(g) == "pick_heat_then_place_in_recep" for g in games)
    assert {task_type_of(g) for g in task.games("valid_unseen")} == set(TASK_TYPES)


@requires_alfworld
def test_floorplan_splits_partition_train():
    """train_fit and train_heldout split ``train`` by floorplan: disjoint, together all of it,
    the held-out games exactly those of HELDOUT_SCENES (three of each room type), every task
    type on both sides, and no held-out floorplan in valid_unseen (its four are unseen)."""
    task = ALFWorldTask()
    assert {"train_fit", "train_heldout"} <= set(task.splits())
    train, fit, held = (task.games(s) for s in ("train", "train_fit", "train_heldout"))
    assert sorted(fit + held) == sorted(train) and not set(fit) & set(held)
    assert {scene_of(g) for g in held} == set(HELDOUT_SCENES)
    assert not {scene_of(g) for g in fit} & set(HELDOUT_SCENES)
    assert sorted({s // 100 for s in HELDOUT_SCENES}) == [0, 2, 3, 4]
    assert len(held) == 154 and task.num_tasks("train_heldout") == 154  # 12.8% of 1200
    assert {task_type_of(g) for g in held} == {task_type_of(g) for g in fit} == set(TASK_TYPES)
    assert not {scene_of(g) for g in task.games("valid_unseen")} & set(HELDOUT_SCENES)
    heat = ALFWorldTask(task_types=["pick_heat_then_place_in_recep"])
    assert {task_type_of(g) for g in heat.games("train_heldout")} == {
        "pick_heat_then_place_in_recep"
    }
    obs = task.reset("train_heldout", 0)  # a derived split plays like any other
    assert "Your task is to:" in obs.text


def test_scene_of_reads_the_folder_name(tmp_path):
    game = tmp_path / "pick_and_place_simple-Mug-None-Desk-308" / "trial_1" / "game.tw-pddl"
    assert scene_of(game) == 308
    with pytest.raises(CorruptDataError, match=r"does not end in a scene number"):
        scene_of(tmp_path / "pick_and_place_simple-Mug" / "trial_1" / "game.tw-pddl")


@requires_alfworld
@pytest.mark.parametrize("index", [0, 20, 45, 70, 95, 120])
def test_expert_walkthrough_wins(index):
    task = ALFWorldTask()
    obs = task.reset("valid_unseen", index)
    assert "Your task is to:" in obs.text and task.description
    for _ in range(60):
        if obs.won:
            break
        obs = task.step(task.expert_command())
    assert obs.won and obs.score == 1.0
    assert task.expert_command() is None


@requires_alfworld
def test_planner_recovers_off_the_walkthrough():
    task = ALFWorldTask()
    obs = task.reset("valid_unseen", 5)
    walk = task.walkthrough
    detour = next(c for c in obs.admissible_commands if c.startswith("go to") and c != walk[0])
    task.step(detour)
    for _ in range(60):
        if obs.won:
            break
        obs = task.step(task.expert_command())
    assert obs.won


@requires_alfworld
def test_invalid_command_changes_nothing():
    task = ALFWorldTask()
    task.reset("valid_unseen", 5)
    obs = task.step("fly to the moon")
    assert obs.text == "Nothing happens." and not obs.valid


@requires_alfworld
def test_pickle_replays_commands():
    task = ALFWorldTask()
    task.reset("valid_unseen", 7)
    task.step(task.expert_command())
    clone = pickle.loads(pickle.dumps(task))
    assert clone.commands == task.commands
    assert clone.expert_command() == task.expert_command()
    assert clone.step(task.expert_command()).text == task.step(task.expert_command()).text


# ------------------------------------------------------------- bounded planner calls
def test_call_with_timeout_returns_times_out_and_fails_loudly():
    import time

    from precision_gym.tasks.alfworld import call_with_timeout

    assert call_with_timeout(lambda: ["go to desk 1", 3], 10.0) == (["go to desk 1", 3], None)
    assert call_with_timeout(lambda: "in-process", None) == ("in-process", None)
    t = time.monotonic()
    assert call_with_timeout(lambda: time.sleep(30), 0.3) == (None, "wall")
    assert time.monotonic() - t < 5.0  # the child was killed, not waited for
    with pytest.raises(RuntimeError, match="the planner subprocess failed"):
        call_with_timeout(lambda: 1 / 0, 10.0)
    with pytest.raises(ConfigError, match="timeout_s must be > 0 or None, got 0"):
        call_with_timeout(lambda: 1, 0)
    with pytest.raises(ConfigError, match="cpu_s must be > 0 or None, got -2"):
        call_with_timeout(lambda: 1, None, -2)
    with pytest.raises(ConfigError, match="planner_timeout_s must be > 0 or None, got -1"):
        ALFWorldTask(planner_timeout_s=-1)
    with pytest.raises(ConfigError, match="planner_cpu_s must be > 0 or None, got 0"):
        ALFWorldTask(planner_cpu_s=0)


def _spin() -> None:
    while True:
        pass


def _killed() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would


def test_the_cpu_bound_counts_computing_not_waiting():
    """The CPU bound cuts a search by the CPU time it used, not by how long it took: a child
    that only waits (as a search starved of a core does) is not cut, one that computes is."""
    import time

    from precision_gym.tasks.alfworld import call_with_timeout

    t = time.monotonic()
    assert call_with_timeout(_spin, None, 1.0) == (None, "cpu")
    assert 0.9 < time.monotonic() - t < 15.0
    assert call_with_timeout(lambda: time.sleep(1.5) or "waited", None, 1.0) == ("waited", None)
    assert call_with_timeout(_spin, 0.3, 30.0) == (None, "wall")  # the safety net still works
    assert call_with_timeout(lambda: [1, "a"], None, 5.0) == ([1, "a"], None)
    with pytest.raises(RuntimeError, match="the planner subprocess failed"):
        call_with_timeout(_killed, None, 5.0)  # killed by someone else: a failure, not "cpu"


def test_the_cpu_bound_stays_under_a_job_cpu_limit():
    """Under a lower hard RLIMIT_CPU (``ulimit -t`` of a batch job) the child's bound is capped
    to it instead of failing every planner call."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (100, 100))\n"
        "from precision_gym.tasks.alfworld import call_with_timeout\n"
        "print(call_with_timeout(lambda: [1], None, 500.0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "([1], None)"


def _off_plan(task: ALFWorldTask, index: int = 5) -> None:
    """Reset and open two receptacles the walkthrough never opens (two world-changing
    deviations, the second not an undo of the first): only the planner knows the way now."""
    obs = task.reset("valid_unseen", index)
    opened = 0
    for place in [c for c in obs.admissible_commands if c.startswith("go to ")]:
        obs = task.step(place)
        opener = next((c for c in obs.admissible_commands if c.startswith("open ")), None)
        if opener is not None and opener not in task.walkthrough:
            task.step(opener)
            opened += 1
            if opened == 2:
                return
    raise AssertionError("found no two receptacles to open")


@requires_alfworld
def test_planner_runs_bounded_with_the_same_plan_and_cuts_runaway_searches():
    unbounded = ALFWorldTask(planner_timeout_s=None, planner_cpu_s=None)
    bounded = ALFWorldTask()  # the default: a CPU-time bound, no wall-clock one
    assert (bounded.planner_cpu_s, bounded.planner_timeout_s) == (30.0, None)
    _off_plan(unbounded)
    _off_plan(bounded)
    assert unbounded.commands == bounded.commands
    assert bounded.expert_command() == unbounded.expert_command() is not None
    assert bounded.planner_timeouts == 0
    cut = ALFWorldTask(planner_timeout_s=1e-4)  # no search finishes in 0.1 ms
    _off_plan(cut)
    with pytest.warns(RuntimeWarning, match=r"no plan within planner_timeout_s=0.0001 s"):
        assert cut.expert_command() is None
    assert cut.planner_timeouts == 1


@requires_alfworld
def test_a_search_over_its_cpu_bound_is_named_in_the_warning(monkeypatch):
    import precision_gym.tasks.alfworld as alfworld_module

    seen = []

    def over_cpu(fn, timeout_s, cpu_s=None):
        seen.append((timeout_s, cpu_s))
        return None, "cpu"  # what call_with_timeout answers when RLIMIT_CPU ended the child

    task = ALFWorldTask(planner_cpu_s=12)
    _off_plan(task)
    monkeypatch.setattr(alfworld_module, "call_with_timeout", over_cpu)
    with pytest.warns(RuntimeWarning, match=r"no plan within planner_cpu_s=12 CPU s for valid"):
        assert task.expert_command() is None
    assert seen == [(None, 12)] and task.planner_timeouts == 1


@requires_alfworld
def test_after_a_planner_timeout_the_episode_asks_no_more_and_pickles_alike():
    cut = ALFWorldTask(planner_timeout_s=1e-4)
    _off_plan(cut)
    with pytest.warns(RuntimeWarning):
        assert cut.expert_command() is None
    clone = pickle.loads(pickle.dumps(cut))
    for task in (cut, clone):  # neither asks the planner again in this episode
        obs = task.step(next(c for c in task._last.admissible_commands if c.startswith("go to")))
        assert task.expert_command() is None and obs.valid
    assert cut.planner_timeouts == 1
    cut.reset("valid_unseen", 5)  # a new episode starts on the walkthrough again
    assert cut.expert_command() == cut.walkthrough[0]


@requires_alfworld
def test_a_state_another_task_planned_is_answered_without_a_search(monkeypatch):
    """Tasks in one process share the planner's answers per (game, state, bounds): the same
    plan, no second search; a shared cut still counts and ends that episode's planning."""
    import precision_gym.tasks.alfworld as alfworld_module

    first, second = ALFWorldTask(), ALFWorldTask()
    _off_plan(first)
    plan = first._plan()
    assert plan

    def no_search(*args, **kwargs):
        raise AssertionError("the planner was asked again")

    monkeypatch.setattr(alfworld_module, "call_with_timeout", no_search)
    _off_plan(second)
    assert second._plan() == plan and second.expert_command() == plan[0]
    searched = (["searched"], None)  # a stand-in search: other bounds are another key
    monkeypatch.setattr(alfworld_module, "call_with_timeout", lambda *a, **k: searched)
    other = ALFWorldTask(planner_cpu_s=29)
    _off_plan(other)
    assert other._plan() == ["searched"]

    monkeypatch.undo()
    cut = ALFWorldTask(planner_timeout_s=1e-4)
    _off_plan(cut)
    with pytest.warns(RuntimeWarning, match="no plan within planner_timeout_s=0.0001 s"):
        assert cut.expert_command() is None
    monkeypatch.setattr(alfworld_module, "call_with_timeout", no_search)
    again = ALFWorldTask(planner_timeout_s=1e-4)
    _off_plan(again)
    with pytest.warns(RuntimeWarning, match="no plan within planner_timeout_s=0.0001 s"):
        assert again.expert_command() is None
    assert again.planner_timeouts == 1 and again._planner_gave_up


@requires_alfworld
def test_a_game_load_leaves_the_callers_sys_argv(monkeypatch):
    """Fast Downward's translator (TextWorld's ``pddl2sas``) sets ``sys.argv`` to its own
    (``translate.py domain task``); a reset and the first plan give the caller's back."""
    import sys

    from precision_gym.tasks.alfworld import _install_translation_cache

    _install_translation_cache()._memo.clear()  # so that this reset translates
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--my-flag"])
    task = ALFWorldTask()
    _off_plan(task)  # a reset, then world changes off the walkthrough
    assert task._plan()  # the planner's task, translated on its first plan
    assert sys.argv == ["my_script.py", "--my-flag"]


# ------------------------------------------- TextWorld's text generation, parsed once
@requires_alfworld
def test_textworld_memo_leaves_every_observation_as_textworld_writes_it():
    """Random commands on a game of every task type, with TextWorld as shipped and with the
    memo (:mod:`precision_gym.tasks.textworld_memo`): the same text, admissible commands and
    win flag at every step, and the memo does serve the parses."""
    import random

    from precision_gym.tasks import textworld_memo

    task = ALFWorldTask()
    games = task.games("valid_unseen")
    picks = [next(i for i, g in enumerate(games) if task_type_of(g) == t) for t in TASK_TYPES]

    def play() -> list[tuple]:
        records = []
        for index in picks:
            rng = random.Random(index)
            obs = task.reset("valid_unseen", index)
            records.append((obs.text, tuple(obs.admissible_commands), obs.won))
            for _ in range(12):
                command = rng.choice(obs.admissible_commands)
                obs = task.step(command)
                records.append((command, obs.text, tuple(obs.admissible_commands), obs.won))
        return records

    task.warm_up()
    assert textworld_memo.installed()
    with textworld_memo.disabled():
        assert not textworld_memo.installed()
        shipped = play()
    before = textworld_memo.stats()
    memo = play()
    after = textworld_memo.stats()
    assert textworld_memo.installed() and memo == shipped and len(memo) == 6 * 13
    assert after["parse"] - before["parse"] > 10 * (after["miss"] - before["miss"])


# ------------------------------------------------- the planner's task, loaded when asked
@requires_alfworld
@pytest.mark.parametrize("index", [5, 40])
def test_the_planners_task_loads_on_first_plan_and_plans_as_the_eager_engine(index):
    """A reset no longer translates and loads the planner's (optimised) task; the first plan
    does, from whatever state the episode is in, and its plans equal those of TextWorld's
    own engine, which loaded that task with the game."""
    from precision_gym.tasks.alfworld import call_with_timeout

    task = ALFWorldTask()
    _off_plan(task, index)
    lib = task._pddl_env().downward_lib
    assert lib.replan_pending  # a reset and five steps, and the task still not translated

    eager_env = task._make_engine()  # TextWorld's engine, the planner's task loaded eagerly
    eager = eager_env
    while getattr(eager, "_wrapped_env", None) is not None:
        eager = eager._wrapped_env
    eager.downward_lib = eager.downward_lib._lib
    eager_env.load(task.game_file)
    eager_env.reset()
    for command in task.commands:
        eager_env.step(command)

    def eager_plan():
        plan, cut = call_with_timeout(
            lambda: list(eager._pddl_state.replan(eager._entity_infos) or []), None, 30
        )
        assert cut is None
        return plan

    assert task._plan() == eager_plan() != []
    assert not lib.replan_pending  # loaded in this process, for the plans that follow
    command = task.expert_command()
    task.step(command)
    eager_env.step(command)
    assert task._state_key() == frozenset(
        str(f) for f in eager._pddl_state.facts if not f.name.startswith("not_")
    )
    assert task._plan() == eager_plan()
    eager_env.close()


# ------------------------------------------------------------- DMR-ALFWorld-v1: no planner
@requires_alfworld
def test_without_the_planner_the_expert_stops_where_only_the_planner_knows_the_way(monkeypatch):
    """planner=False (DMR-ALFWorld-v1): the same walkthrough and undo answers as v0, None
    past them, and no search or planner translation ever runs."""
    import precision_gym.tasks.alfworld as alfworld_module

    v0, v1 = ALFWorldTask(), ALFWorldTask(planner=False)
    assert (v0.planner, v1.planner) == (True, False)
    obs0, obs1 = v0.reset("valid_unseen", 5), v1.reset("valid_unseen", 5)
    assert obs1.text == obs0.text
    detour = next(c for c in obs1.admissible_commands if c.startswith("go to ") and c not in v1.walkthrough)  # fmt: skip
    for task in (v0, v1):
        task.step(detour)
    assert v1.expert_command() == v0.expert_command() is not None  # back to the walkthrough

    def no_search(*args, **kwargs):
        raise AssertionError("planner=False ran a planner search")

    monkeypatch.setattr(alfworld_module, "call_with_timeout", no_search)
    _off_plan(v1)
    assert v1.expert_command() is None and v1.planner_timeouts == 0
    assert v1._pddl_env().downward_lib.replan_pending  # the planner's task never translated


def test_planner_must_be_a_bool():
    with pytest.raises(ConfigError, match=r"planner must be True or False, got 'no'"):
        ALFWorldTask(planner="no")


@requires_alfworld
def test_alfworld_v1_is_alfworld_without_the_planner():
    import gymnasium as gym

    import precision_gym  # noqa: F401  (registers the ids)
    from precision_gym.envs.mixed_precision import make_task

    env = gym.make("DMR-ALFWorld-v1")
    try:
        task = env.unwrapped.task
        assert task.name == "alfworld" and task.planner is False
    finally:
        env.close()
    assert make_task("alfworld", {}).planner is True
    with pytest.raises(
        ConfigError, match=r"expected no planner in task_kwargs, got planner=True \(task 'alfworld'"
    ):
        make_task("alfworld-v1", {"planner": True})


@requires_alfworld
def test_a_task_pickled_before_v1_unpickles_with_the_planner():
    state = ALFWorldTask(planner=False).__getstate__()
    del state["planner"]  # what an older version pickled
    clone = ALFWorldTask.__new__(ALFWorldTask)
    clone.__setstate__(state)
    assert clone.planner is True
