"""The planner's answers kept on disk (``precision_gym.tasks.plan_store``): the store's own
contract as small pure checks, then ALFWorld tasks in two processes sharing one folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import requires_alfworld
from test_alfworld_task import _off_plan

from precision_gym.error import ConfigError
from precision_gym.io import current_umask
from precision_gym.tasks.plan_store import (
    PLAN_CACHE_ENV,
    PlanStore,
    plan_store,
    resolve_plan_cache,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def game(tmp_path):
    path = tmp_path / "game.tw-pddl"
    path.write_text('{"pddl_problem": "one"}')
    return str(path)


def test_an_answer_round_trips_and_a_miss_is_none(tmp_path, game):
    store = PlanStore(tmp_path / "plans")
    assert store.get(game, "s1", 30.0, None) is None
    assert store.put(game, "s1", 30.0, None, (("go to desk 1", "open drawer 1"), None))
    assert store.get(game, "s1", 30.0, None) == (("go to desk 1", "open drawer 1"), None)
    assert store.put(game, "s2", 30.0, None, ((), "cpu"))  # a CPU-bound cut is kept
    assert PlanStore(tmp_path / "plans").get(game, "s2", 30.0, None) == ((), "cpu")
    assert store.stats() == {"hits": 1, "misses": 1, "sas_hits": 0, "sas_misses": 0, "writes": 2}
    paths = sorted(p for p in (tmp_path / "plans" / "plans").rglob("*") if p.is_file())
    assert len(paths) == 2
    assert all(p.suffix == ".json" and not p.name.startswith(".") for p in paths)
    # written as the library writes every file: the usual mode, not mkstemp's private 0600
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o666 & ~current_umask()}


def test_the_key_covers_state_bounds_and_the_game_files_content(tmp_path, game):
    store = PlanStore(tmp_path)
    store.put(game, "s", 30.0, None, (("a",), None))
    assert store.get(game, "other state", 30.0, None) is None
    assert store.get(game, "s", 29.0, None) is None
    assert store.get(game, "s", 30.0, 60.0) is None
    Path(game).write_text('{"pddl_problem": "two!"}')  # same path, other game
    assert store.get(game, "s", 30.0, None) is None


def test_a_wall_clock_cut_is_not_kept(tmp_path, game):
    """Whether a wall-clock bound cuts depends on the machine's load: not an answer."""
    store = PlanStore(tmp_path)
    assert store.put(game, "s", 30.0, 5.0, ((), "wall")) is False
    assert store.get(game, "s", 30.0, 5.0) is None
    assert not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '["a list"]',
        '{"plan": "go to desk 1", "cut": null}',
        '{"plan": [], "cut": "wall"}',
    ],
)
def test_an_unreadable_answer_is_searched_again_with_a_warning(tmp_path, game, text):
    store = PlanStore(tmp_path)
    store.put(game, "s", 30.0, None, (("a",), None))
    (path,) = tmp_path.rglob("*.json")
    path.write_text(text)
    with pytest.warns(
        RuntimeWarning, match=r"planner answer .*\.json is unreadable .*searching again"
    ):
        assert store.get(game, "s", 30.0, None) is None
    store.put(game, "s", 30.0, None, (("a",), None))  # the search's answer replaces it
    assert store.get(game, "s", 30.0, None) == (("a",), None)


def test_a_folder_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path, game):
    blocked = tmp_path / "plans"
    blocked.mkdir()
    (blocked / "plans").write_text("a file where the store wants a folder")
    (blocked / "sas").write_text("likewise")
    store = PlanStore(blocked)
    with pytest.warns(RuntimeWarning, match=r"cannot write to the plan folder .*plans"):
        assert store.put(game, "s", 30.0, None, (("a",), None)) is False
    assert store.put_sas("(d)", "(p)", False, "begin_version") is False  # warned once only
    with pytest.warns(RuntimeWarning, match=r"planner answer .* is unreadable"):
        assert store.get(game, "s", 30.0, None) is None  # a file where a folder should be
    assert store.stats()["writes"] == 0


def test_a_write_that_fails_half_way_leaves_no_temporary_file(tmp_path, game, monkeypatch):
    store = PlanStore(tmp_path / "plans")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("precision_gym.io.os.replace", full_disk)
    with pytest.warns(RuntimeWarning, match=r"cannot write to the plan folder .*No space left"):
        assert store.put(game, "s", 30.0, None, (("a",), None)) is False
    assert [p for p in (tmp_path / "plans").rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    assert store.put(game, "s", 30.0, None, (("a",), None))  # the next write goes through
    assert PlanStore(tmp_path / "plans").get(game, "s", 30.0, None) == (("a",), None)


def test_the_folder_is_validated_before_any_work(tmp_path, monkeypatch):
    afile = tmp_path / "a_file"
    afile.write_text("")
    with pytest.raises(ConfigError, match=r"plan_cache must be a folder .*got the file .*a_file"):
        resolve_plan_cache(afile)
    with pytest.raises(ConfigError, match=r"plan_cache must name a folder, got ' '"):
        resolve_plan_cache(" ")
    monkeypatch.delenv(PLAN_CACHE_ENV, raising=False)
    assert resolve_plan_cache(None) is None
    monkeypatch.setenv(PLAN_CACHE_ENV, str(tmp_path / "from_env"))
    assert resolve_plan_cache(None) == str(tmp_path / "from_env")
    monkeypatch.chdir(tmp_path)
    assert resolve_plan_cache("rel") == str(tmp_path / "rel")  # absolute: workers may cd
    assert plan_store(str(tmp_path / "x")) is plan_store(str(tmp_path / "x"))


def test_alfworld_task_takes_the_folder_from_its_kwarg_or_the_environment(tmp_path, monkeypatch):
    from precision_gym.tasks.alfworld import ALFWorldTask

    monkeypatch.delenv(PLAN_CACHE_ENV, raising=False)
    assert ALFWorldTask(data_root=tmp_path).plan_cache is None
    monkeypatch.setenv(PLAN_CACHE_ENV, str(tmp_path / "env"))
    assert ALFWorldTask(data_root=tmp_path).plan_cache == str(tmp_path / "env")
    assert ALFWorldTask(data_root=tmp_path, plan_cache=tmp_path / "kw").plan_cache == str(
        tmp_path / "kw"
    )
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="plan_cache must be a folder"):
        ALFWorldTask(data_root=tmp_path, plan_cache=tmp_path / "f")


def test_a_translation_round_trips_and_a_broken_one_is_translated_again(tmp_path):
    store = PlanStore(tmp_path)
    sas = "begin_version\n3\nend_version\n" + "x" * 10_000
    assert store.get_sas("(domain)", "(problem)", False) is None
    store.put_sas("(domain)", "(problem)", False, sas)
    assert store.get_sas("(domain)", "(problem)", False) == sas
    assert store.get_sas("(domain)", "(problem)", True) is None  # the optimised one: another
    assert store.get_sas("(domain)", "(other problem)", False) is None
    (path,) = (tmp_path / "sas").rglob("*.sas.gz")
    assert path.stat().st_size < 1000  # gzip
    for broken in (b"not gzip", __import__("gzip").compress(b"not SAS text")):
        path.write_bytes(broken)
        store._warned = False
        with pytest.warns(RuntimeWarning, match=r"planner answer .*\.sas\.gz is unreadable"):
            assert store.get_sas("(domain)", "(problem)", False) is None
    assert store.stats()["sas_hits"] == 1


def _dump_task(task) -> str:
    """Everything TextWorld reads of a parsed PDDL task (and more), as text."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        task.dump()
        for item in [*task.actions, *task.axioms]:
            item.dump()
    return "\n".join(
        [
            buf.getvalue(),
            repr(sorted(str(o) for o in task.objects)),
            repr([str(a) for a in task.init]),
            repr([(t.name, t.supertype_names) for t in task.types]),
            repr([(p.name, [str(a) for a in p.arguments]) for p in task.predicates]),
        ]
    )


@requires_alfworld
def test_a_stored_translation_gives_the_translators_task_on_every_task_type():
    """On a hit the PDDL task is parsed again instead of translated: the same task as the one
    the translator returns, optimised or not (one game per task type here; all 134
    valid_unseen games in session 19's check, benchmarks/RESULTS.md)."""
    import json as json_module

    from precision_gym.tasks.alfworld import (
        TASK_TYPES,
        ALFWorldTask,
        _install_translation_cache,
        _parse_pddl_task,
    )

    cache = _install_translation_cache()
    argv = list(sys.argv)
    for kind in TASK_TYPES:
        game = ALFWorldTask(task_types=[kind]).games("valid_unseen")[0]
        data = json_module.loads(Path(game).read_text())
        for optimize in (False, True):
            task, _ = cache._module.pddl2sas(
                data["pddl_domain"], data["pddl_problem"], optimize=optimize
            )
            parsed = _parse_pddl_task(data["pddl_domain"], data["pddl_problem"])
            assert _dump_task(parsed) == _dump_task(task), game
    sys.argv = argv


_PLAN_IN_A_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_alfworld_task import _off_plan
    from precision_gym.tasks.alfworld import ALFWorldTask
    task = ALFWorldTask(plan_cache={folder!r})
    _off_plan(task)
    print(json.dumps(task._plan()))
    """
)


@requires_alfworld
def test_a_state_another_process_planned_is_answered_without_a_search(tmp_path, monkeypatch):
    """A child process plans an off-walkthrough state into the folder; this process, whose own
    memo is empty, gets the same plan without a search. A CPU-bound cut kept there counts,
    warns and ends the episode's planning as the task's own cut would."""
    import precision_gym.tasks.alfworld as alfworld_module
    from precision_gym.tasks.alfworld import _SHARED_PLANS, ALFWorldTask

    folder = str(tmp_path / "plans")
    code = _PLAN_IN_A_CHILD.format(tests=str(ROOT / "tests"), folder=folder)
    env = {k: v for k, v in os.environ.items() if k != PLAN_CACHE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout.strip().splitlines()[-1])
    assert plan and len(list((Path(folder) / "plans").rglob("*.json"))) == 1
    assert len(list((Path(folder) / "sas").rglob("*.sas.gz"))) == 2  # the game, the planner's

    def no_search(*args, **kwargs):
        raise AssertionError("the planner was asked again")

    def no_translation(*args, **kwargs):
        raise AssertionError("the game was translated again")

    monkeypatch.setattr(alfworld_module, "call_with_timeout", no_search)
    cache = alfworld_module._install_translation_cache()
    cache._memo.clear()  # as in a fresh process
    monkeypatch.setattr(cache._module, "pddl2sas", no_translation)
    _SHARED_PLANS.clear()
    task, alone = ALFWorldTask(plan_cache=folder), ALFWorldTask(plan_cache=tmp_path / "empty")
    _off_plan(task)
    assert task._plan() == plan and task.expert_command() == plan[0]
    assert plan_store(folder).stats() == {
        "hits": 1,
        "misses": 0,
        "sas_hits": 1,  # the game; the planner's task is never loaded: no search
        "sas_misses": 0,
        "writes": 0,
    }
    monkeypatch.undo()  # the same game and episode, translated and searched here: the same
    cache._memo.clear()
    _SHARED_PLANS.clear()
    _off_plan(alone)
    assert alone.commands == task.commands and alone._last == task._last
    assert alone._plan() == plan and plan_store(str(tmp_path / "empty")).stats()["writes"] == 3

    cut_folder = str(tmp_path / "cut")
    monkeypatch.setattr(alfworld_module, "call_with_timeout", lambda *a, **k: (None, "cpu"))
    first = ALFWorldTask(plan_cache=cut_folder, planner_cpu_s=12)
    _off_plan(first)
    with pytest.warns(RuntimeWarning, match="no plan within planner_cpu_s=12 CPU s"):
        assert first.expert_command() is None
    monkeypatch.setattr(alfworld_module, "call_with_timeout", no_search)
    _SHARED_PLANS.clear()  # as in a fresh process
    again = ALFWorldTask(plan_cache=cut_folder, planner_cpu_s=12)
    _off_plan(again)
    with pytest.warns(RuntimeWarning, match="no plan within planner_cpu_s=12 CPU s"):
        assert again.expert_command() is None
    assert again.planner_timeouts == 1 and again._planner_gave_up
