#!/usr/bin/env python
"""Build the ALFWorld few-shot examples (one per task type) from train-split walkthroughs.

Each example replays one train game's expert walkthrough through TextWorld (with the
ALFWorld demangler) and records the intro, one ``think:`` line stating the plan (written
from the walkthrough by a template; it answers ``OK.``), and every ``> action`` /
observation pair. The result is committed as package data:
``precision_gym/prompting/alfworld_fewshot.json`` (read by ``precision_gym.prompting.alfworld``).

Usage::

    python scripts/build_alfworld_fewshot.py [--data ../shared/alfworld/json_2.1.1] \
        [--out precision_gym/prompting/alfworld_fewshot.json] [--min-steps 5]

Deterministic: per task type the train game with the shortest walkthrough of at least
``--min-steps`` commands is used (ties broken by path).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from precision_gym.tasks.alfworld import TASK_TYPES

_BANNER_RE = re.compile(r"^\s*-= Welcome to TextWorld, ALFRED! =-\s*", re.MULTILINE)
_NUM_RE = re.compile(r"\s+\d+$")


def _strip_num(name: str) -> str:
    return _NUM_RE.sub("", name.strip())


def plan_thought(task_type: str, walkthrough: list[str]) -> str:
    """A one-line plan written from the walkthrough (the ReAct paper's first thought)."""
    takes = [re.match(r"take (.+?) from ", c) for c in walkthrough]
    objs = [_strip_num(m.group(1)) for m in takes if m]
    moves = [re.match(r"move .+? to (.+)$", c) for c in walkthrough]
    receps = [_strip_num(m.group(1)) for m in moves if m]
    obj = objs[0] if objs else "the object"
    recep = receps[-1] if receps else "the receptacle"
    article = "an" if obj[:1] in "aeiou" else "a"
    start = f"think: To solve the task, I need to find and take {article} {obj}, then "
    if task_type == "look_at_obj_in_light":
        uses = [re.match(r"use (.+)$", c) for c in walkthrough]
        lamp = next((_strip_num(m.group(1)) for m in uses if m), "desklamp")
        return start + f"find and use a {lamp}."
    for verb, tool_re in (
        ("clean", r"clean .+? with (.+)$"),
        ("heat", r"heat .+? with (.+)$"),
        ("cool", r"cool .+? with (.+)$"),
    ):
        if task_type == f"pick_{verb}_then_place_in_recep":
            tools = [re.match(tool_re, c) for c in walkthrough]
            tool = next((_strip_num(m.group(1)) for m in tools if m), verb)
            return start + f"{verb} it with {tool}, then put it in/on {recep}."
    if task_type == "pick_two_obj_and_place":
        return (
            f"think: To solve the task, I need to find and take the first {obj}, then put "
            f"it in/on {recep}, then find and take the second {obj}, then put it in/on "
            f"{recep}."
        )
    return start + f"put it in/on {recep}."


_AT_RE = re.compile(r"^(?:take .+? from|move .+? to|(?:heat|cool|clean) .+? with|open|close) (.+)$")


def is_coherent(walkthrough: list[str]) -> bool:
    """Whether every take/move/heat/cool/clean/open happens where the last ``go to`` led.

    Some planner walkthroughs act on far-away receptacles (TextWorld accepts them); those
    would teach the model to skip the ``go to`` steps, so they are not used as examples.
    """
    here = None
    for cmd in walkthrough:
        if cmd.startswith("go to "):
            here = cmd[len("go to ") :]
            continue
        m = _AT_RE.match(cmd)
        if m and m.group(1) != here:
            return False
    return True


def choose_games(data: Path, min_steps: int) -> dict[str, Path]:
    """Per task type the shortest coherent walkthrough with >= ``min_steps`` commands (else
    the longest there is), ties broken by path."""
    chosen: dict[str, tuple[int, int, str, Path]] = {}
    for path in sorted((data / "train").glob("*/*/game.tw-pddl")):
        task_type = path.parent.parent.name.split("-")[0]
        walkthrough = json.loads(path.read_text())["walkthrough"]
        if not is_coherent(walkthrough):
            continue
        n = len(walkthrough)
        key = (0, n, str(path), path) if n >= min_steps else (1, -n, str(path), path)
        if task_type not in chosen or key[:3] < chosen[task_type][:3]:
            chosen[task_type] = key
    return {t: v[3] for t, v in chosen.items()}


def replay(path: Path, task_type: str) -> dict[str, object]:
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["walkthrough"])
    env = textworld.start(str(path), request_infos=infos, wrappers=[AlfredDemangler(), AlfredInfos])
    try:
        state = env.reset()
        intro = _BANNER_RE.sub("", state["feedback"]).strip()
        walkthrough = list(state["extra.walkthrough"])
        lines = [intro, f"> {plan_thought(task_type, walkthrough)}", "OK."]
        won = False
        for cmd in walkthrough:
            state, _score, done = env.step(cmd)
            lines.append(f"> {cmd}")
            lines.append(state["feedback"].strip())
            won = bool(state["won"])
            if done:
                break
        if not won:
            raise RuntimeError(f"walkthrough of {path} did not win the game")
    finally:
        env.close()
    task = intro.split("Your task is to:")[-1].strip()
    return {"task": task, "n_actions": len(walkthrough), "text": "\n".join(lines)}


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=here.parent / "shared/alfworld/json_2.1.1")
    ap.add_argument(
        "--out", type=Path, default=here / "precision_gym/prompting/alfworld_fewshot.json"
    )
    ap.add_argument("--min-steps", type=int, default=5)
    args = ap.parse_args()
    games = choose_games(args.data, args.min_steps)
    examples = {}
    for task_type in TASK_TYPES:
        ex = replay(games[task_type], task_type)
        ex["gamefile"] = str(games[task_type].relative_to(args.data))
        examples[task_type] = ex
        print(task_type, ex["gamefile"], ex["n_actions"], "actions")
    payload = {
        "format": 1,
        "source": "ALFWorld json_2.1.1 train split, expert walkthroughs replayed with "
        "TextWorld + AlfredDemangler; think lines written from the walkthrough",
        "builder": "scripts/build_alfworld_fewshot.py",
        "examples": examples,
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print("wrote", args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
