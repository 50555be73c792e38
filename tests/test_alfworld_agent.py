"""ALFWorld ReAct agent: pure parser (exact, near misses, ambiguity), task types, few-shot."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from precision_gym.prompting.alfworld import (
    ALFWORLD_TASK_TYPES,
    ALFWorldReActAgent,
    infer_alfworld_task_type,
    load_alfworld_fewshot,
    parse_alfworld_action,
)
from precision_gym.prompting.base import AgentState

ADMISSIBLE = [
    "go to cabinet 1",
    "go to cabinet 10",
    "go to countertop 1",
    "go to fridge 1",
    "go to drawer 1",
    "go to drawer 2",
    "take apple 1 from countertop 1",
    "take apple 2 from countertop 1",
    "take mug 1 from countertop 1",
    "move mug 1 to countertop 1",
    "open fridge 1",
    "examine countertop 1",
    "look",
    "inventory",
    "heat mug 1 with microwave 1",
]
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "alfworld" / "json_2.1.1"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("go to fridge 1", "go to fridge 1"),
        (" go to fridge 1\nYou arrive at fridge 1.", "go to fridge 1"),
        ("> Go to Fridge 1.", "go to fridge 1"),
        ("Action: open fridge 1", "open fridge 1"),
        ("  \n\n  look  ", "look"),
        ("`inventory`", "inventory"),
        ("go   to  fridge 1", "go to fridge 1"),
    ],
)
def test_exact_matches_after_normalisation(text, expected):
    assert parse_alfworld_action(text, ADMISSIBLE) == (expected, True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("go to the fridge 1", "go to fridge 1"),  # article
        ("take the mug 1 from the countertop 1", "take mug 1 from countertop 1"),
        ("put mug 1 on countertop 1", "move mug 1 to countertop 1"),  # put/move phrasing
        ("put the mug 1 in/on countertop 1", "move mug 1 to countertop 1"),
        ("place mug 1 onto countertop 1", "move mug 1 to countertop 1"),
        ("go to fridge", "go to fridge 1"),  # missing number, unique
        ("open fridge", "open fridge 1"),
        ("take mug from countertop", "take mug 1 from countertop 1"),
        ("heat mug 1 with microwav 1", "heat mug 1 with microwave 1"),  # close match
    ],
)
def test_unambiguous_near_misses_are_mapped(text, expected):
    assert parse_alfworld_action(text, ADMISSIBLE) == (expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "go to drawer",  # drawer 1 or 2
        "take apple from countertop 1",  # apple 1 or 2
        "go to cabinet 11",  # never renumbered to cabinet 1 / 10
        "go to cabinet 2",
        "fly to the moon",
        "take apple 3 from countertop 1",
        "put apple 1 in fridge 1",  # no such move is admissible
    ],
)
def test_ambiguous_or_unknown_outputs_are_invalid(text):
    action, ok = parse_alfworld_action(text, ADMISSIBLE)
    assert not ok and action == text.lower().strip()


def test_think_and_empty():
    assert parse_alfworld_action("think: I need a mug.", ADMISSIBLE) == (
        "think: i need a mug",
        True,
    )
    assert parse_alfworld_action("> think: first find it", []) == ("think: first find it", True)
    assert parse_alfworld_action("", ADMISSIBLE) == ("", False)
    assert parse_alfworld_action(" \n ", ADMISSIBLE) == ("", False)


def test_parser_is_pure_and_keeps_admissible_spelling():
    adm = ["Go To Fridge 1", "look"]
    before = copy.deepcopy(adm)
    assert parse_alfworld_action("go to fridge 1", adm) == ("Go To Fridge 1", True)
    assert parse_alfworld_action("go to fridge 1", adm) == ("Go To Fridge 1", True)
    assert adm == before


def test_older_put_in_on_commands():
    adm = ["put mug 1 in/on countertop 1", "go to countertop 1"]
    assert parse_alfworld_action("put mug 1 on countertop 1", adm) == (adm[0], True)
    assert parse_alfworld_action("move mug 1 to countertop 1", adm) == (adm[0], True)


GOALS = {
    "examine the alarmclock with the desklamp.": "look_at_obj_in_light",
    "look at alarmclock under the desklamp.": "look_at_obj_in_light",
    "put a alarmclock in desk.": "pick_and_place_simple",
    "put some alarmclock on desk.": "pick_and_place_simple",
    "clean some apple and put it in diningtable.": "pick_clean_then_place_in_recep",
    "put a clean apple in diningtable.": "pick_clean_then_place_in_recep",
    "cool some apple and put it in diningtable.": "pick_cool_then_place_in_recep",
    "put a cool apple in diningtable.": "pick_cool_then_place_in_recep",
    "heat some apple and put it in diningtable.": "pick_heat_then_place_in_recep",
    "put a hot apple in fridge.": "pick_heat_then_place_in_recep",
    "find two alarmclock and put them in desk.": "pick_two_obj_and_place",
    "put two alarmclock in desk.": "pick_two_obj_and_place",
}


@pytest.mark.parametrize("goal, task_type", GOALS.items())
def test_task_type_from_every_goal_template(goal, task_type):
    assert infer_alfworld_task_type(goal) == task_type
    obs = f"You are in the middle of a room.\n\nYour task is to: {goal}"
    assert infer_alfworld_task_type(obs) == task_type


def test_task_type_unknown():
    assert infer_alfworld_task_type("buy a red shirt") is None
    assert infer_alfworld_task_type("") is None


@pytest.mark.skipif(not DATA.is_dir(), reason=f"ALFWorld game files not found at {DATA}")
def test_task_type_matches_directory_on_valid_unseen():
    games = sorted((DATA / "valid_unseen").glob("*/*/game.tw-pddl"))
    assert games
    for path in games[::3]:
        grammar = json.loads(path.read_text())["grammar"]
        goal = grammar.split("Your task is to: ")[1].split('"')[0]
        assert infer_alfworld_task_type(goal) == path.parent.parent.name.split("-")[0], goal


def test_fewshot_examples_one_per_type():
    fs = load_alfworld_fewshot()
    assert set(fs) == set(ALFWORLD_TASK_TYPES)
    for task_type, text in fs.items():
        lines = text.splitlines()
        assert lines[0].startswith("You are in the middle of a room.")
        assert infer_alfworld_task_type(text) == task_type
        assert any(ln.startswith("> think: To solve the task") for ln in lines)
        assert (
            lines[lines.index(next(ln for ln in lines if ln.startswith("> think:"))) + 1] == "OK."
        )
        assert sum(ln.startswith("> ") for ln in lines) >= 4
        assert len(text) < 2500


def _state(goal: str, actions=(), observations=()) -> AgentState:
    return AgentState(
        goal,
        f"You are in the middle of a room.\n\nYour task is to: {goal}",
        list(actions),
        list(observations),
        ["look"],
        len(actions),
    )


def test_prompt_uses_matching_example_and_is_append_only():
    agent = ALFWorldReActAgent()
    fs = load_alfworld_fewshot()
    s0 = _state("put a hot apple in fridge.")
    p0 = agent.build_prompt(s0)
    assert fs["pick_heat_then_place_in_recep"] in p0
    assert fs["pick_cool_then_place_in_recep"] not in p0
    assert p0.endswith("Your task is to: put a hot apple in fridge.\n>")
    s1 = _state(
        "put a hot apple in fridge.",
        ["think: find an apple", "go to fridge 1"],
        ["OK.", "You arrive at fridge 1."],
    )
    p1 = agent.build_prompt(s1)
    assert p1.startswith(p0[:-1])  # append-only: the old prompt minus its final '>'
    assert p1.endswith("> think: find an apple\nOK.\n> go to fridge 1\nYou arrive at fridge 1.\n>")
    assert fs["look_at_obj_in_light"] in ALFWorldReActAgent().build_prompt(
        _state("examine the cd with the desklamp.")
    )


def test_prompt_few_shot_modes():
    s = _state("put a hot apple in fridge.")
    assert "Here is an example." not in ALFWorldReActAgent(few_shot="").build_prompt(s)
    assert "MY EXAMPLE" in ALFWorldReActAgent(few_shot="MY EXAMPLE").build_prompt(s)
    forced = ALFWorldReActAgent(task_type="pick_two_obj_and_place").build_prompt(s)
    assert load_alfworld_fewshot()["pick_two_obj_and_place"] in forced
    fallback = ALFWorldReActAgent().build_prompt(_state("do something odd"))
    assert load_alfworld_fewshot()["pick_and_place_simple"] in fallback
    with pytest.raises(ValueError, match="task_type must be one of"):
        ALFWorldReActAgent(task_type="cook")


def test_agent_sampling_and_thinking():
    agent = ALFWorldReActAgent()
    assert (agent.sampling.max_tokens, agent.sampling.temperature, agent.sampling.stop) == (
        100,
        0.0,
        ("\n",),
    )
    assert agent.is_thinking(" think: hmm") and not agent.is_thinking("go to fridge 1")
    assert agent.parse(" take mug from countertop\n", ADMISSIBLE) == (
        "take mug 1 from countertop 1",
        True,
    )


@pytest.mark.skipif(not DATA.is_dir(), reason=f"ALFWorld game files not found at {DATA}")
def test_walkthrough_replay_through_prompt_and_parser():
    """Replay one valid_unseen walkthrough: paraphrased expert commands parse to the
    admissible command at every step, and the game is won."""
    textworld = pytest.importorskip("textworld")
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    path = sorted((DATA / "valid_unseen").glob("pick_heat*/*/game.tw-pddl"))[0]
    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["walkthrough"])
    env = textworld.start(str(path), request_infos=infos, wrappers=[AlfredDemangler(), AlfredInfos])
    try:
        st = env.reset()
        agent = ALFWorldReActAgent()
        intro = st["feedback"].split("=-", 2)[-1].strip()
        state = AgentState("", intro, [], [], list(st["admissible_commands"]), 0)
        assert agent.example_for(state) == load_alfworld_fewshot()["pick_heat_then_place_in_recep"]
        won = False
        for cmd in st["extra.walkthrough"]:
            said = " " + cmd.replace(" to ", " to the ", 1).capitalize() + "."
            if cmd.startswith("move "):
                said = " put " + cmd[5:].replace(" to ", " in ")
            action, ok = agent.parse(said, state.admissible_commands)
            assert ok and action == cmd, (said, action)
            st, _, done = env.step(action)
            state.actions.append(action)
            state.observations.append(st["feedback"])
            state.admissible_commands = list(st["admissible_commands"])
            won = bool(st["won"])
            if done:
                break
        assert won
        assert agent.build_prompt(state).count("\n> ") >= len(state.actions)
    finally:
        env.close()
