"""ALFWorld ReAct prompter: an append-only prompt with a matching few-shot example, and a pure
one-line action parser.

The prompt (the paper's Appendix B, after ReAct) is a fixed header, one few-shot example of
the current task's type, the task's initial observation, then one ``> action`` /
observation pair per step, ending with ``>`` so the model writes one line (greedy, at most
100 tokens, stop at the newline). ``think: ...`` lines are allowed: the environment answers
``OK.`` without touching the game, and they get no KL.

The few-shot examples are written by ``scripts/build_alfworld_fewshot.py`` from train-split
expert walkthroughs replayed through TextWorld, one per task type, and shipped as package
data (``alfworld_fewshot.json``).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from importlib import resources

from precision_gym.backends.base import Prompt, SamplingParams
from precision_gym.deprecation import module_aliases
from precision_gym.prompting.base import AgentState, TextPrompter, cap_action
from precision_gym.tasks.alfworld import TASK_TYPES

__all__ = [
    "ALFWORLD_TASK_TYPES",
    "THINK_PREFIX",
    "ALFWorldReActPrompter",
    "infer_alfworld_task_type",
    "load_alfworld_fewshot",
    "parse_alfworld_action",
]

THINK_PREFIX = "think:"
ALFWORLD_TASK_TYPES = TASK_TYPES
_FEWSHOT_RESOURCE = "alfworld_fewshot.json"

_PREFIX_RE = re.compile(r"^\s*(?:>\s*|(?:action|act|command)\s*:\s*)+", re.IGNORECASE)
_ARTICLES_RE = re.compile(r"\b(?:the|a|an|some)\s+", re.IGNORECASE)
_NUMBER_RE = re.compile(r"\b\d+\b")
_PUT_RE = re.compile(r"^(?:put|place|move) (.+?) (?:in/on|into|onto|in|on|to) (.+)$")
_TASK_RE = re.compile(r"your task is to:\s*(.+)", re.IGNORECASE)

# goal templates of ALFWorld's six task types (checked in this order: modifiers first)
_TASK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "look_at_obj_in_light",
        re.compile(r"^(?:examine (?:the )?.+ with (?:the )?.+|look at .+ under (?:the )?.+)$"),
    ),
    ("pick_two_obj_and_place", re.compile(r"^(?:find two .+ and put them|put two .+ (?:in|on))")),
    (
        "pick_clean_then_place_in_recep",
        re.compile(r"^(?:clean (?:some|a) .+ and put it|put (?:a|some) clean .+ (?:in|on))"),
    ),
    (
        "pick_heat_then_place_in_recep",
        re.compile(r"^(?:heat (?:some|a) .+ and put it|put (?:a|some) hot .+ (?:in|on))"),
    ),
    (
        "pick_cool_then_place_in_recep",
        re.compile(r"^(?:cool (?:some|a) .+ and put it|put (?:a|some) cool .+ (?:in|on))"),
    ),
    ("pick_and_place_simple", re.compile(r"^put (?:a|an|some) .+ (?:in|on) .+$")),
)


def _normalise(text: str) -> str:
    stripped = text.strip()
    line = next((ln for ln in stripped.splitlines() if ln.strip()), "") if stripped else ""
    line = _PREFIX_RE.sub("", line).strip()
    line = line.strip("`\"'").strip().rstrip(".!").strip()
    return re.sub(r"\s+", " ", line).lower()


def _numbers(text: str) -> list[str]:
    return _NUMBER_RE.findall(text)


def _put_key(text: str) -> tuple[str, str] | None:
    """``(object, receptacle)`` of a put/move command, articles dropped."""
    m = _PUT_RE.match(_ARTICLES_RE.sub("", text))
    return (m.group(1), m.group(2)) if m else None


def parse_alfworld_action(text: str, admissible_commands: list[str]) -> tuple[str, bool]:
    """Map one line of model output to ``(command, is_valid)``; a pure function.

    The first non-empty line is taken; a leading ``>`` / ``Action:``, quotes and trailing
    ``.`` are dropped, case and spacing are normalised. ``think: ...`` lines are returned
    as-is with ``is_valid=True`` (the env answers "OK." without touching the game). An exact
    admissible match is valid. A near miss is mapped to an admissible command only when
    exactly one command fits, trying in order:

    1. articles (``the/a/an/some``) dropped on both sides;
    2. put/move phrasing: ``put X in Y``, ``put X on Y``, ``place X into Y`` ... match the
       admissible ``move X to Y`` (ALFWorld 0.4) or ``put X in/on Y`` (older releases);
    3. missing instance numbers: ``go to fridge`` -> the only ``go to fridge N``;
    4. a close string match (difflib ratio >= 0.9) that keeps every number of the output
       (so ``cabinet 12`` never becomes ``cabinet 1``).

    Anything else is returned normalised with ``is_valid=False``.
    """
    line = _normalise(text)
    if not line:
        return "", False
    if line.startswith(THINK_PREFIX):
        return line, True
    by_norm: dict[str, str] = {}
    for c in admissible_commands:
        by_norm.setdefault(re.sub(r"\s+", " ", c.strip()).lower(), c)
    if line in by_norm:
        return by_norm[line], True

    def unique(hits: set[str]) -> str | None:
        return next(iter(hits)) if len(hits) == 1 else None

    # 1. articles
    stripped = _ARTICLES_RE.sub("", line)
    hits = {c for n, c in by_norm.items() if _ARTICLES_RE.sub("", n) == stripped}
    if (hit := unique(hits)) is not None:
        return hit, True
    if hits:
        return line, False
    # 2. put/move phrasing
    key = _put_key(line)
    if key is not None:
        hits = {c for n, c in by_norm.items() if _put_key(n) == key}
        if (hit := unique(hits)) is not None:
            return hit, True
        if hits:
            return line, False
    # 3. missing instance numbers: every output word matches, numbers only on the command side
    if not _numbers(stripped):
        hits = {
            c
            for n, c in by_norm.items()
            if _NUMBER_RE.sub("", _ARTICLES_RE.sub("", n)).split() == stripped.split()
        }
        if (hit := unique(hits)) is not None:
            return hit, True
        if hits:
            return line, False
    # 4. close string match that keeps the numbers
    nums = _numbers(stripped)
    pool = {_ARTICLES_RE.sub("", n): c for n, c in by_norm.items() if _numbers(n) == nums}
    close = difflib.get_close_matches(stripped, list(pool), n=2, cutoff=0.9)
    if len(close) == 1:
        return pool[close[0]], True
    return line, False


def infer_alfworld_task_type(text: str) -> str | None:
    """The ALFWorld task type of a goal text (``"put a hot apple in fridge."``) or of an
    observation containing ``Your task is to: ...``; ``None`` when no template fits."""
    m = _TASK_RE.search(text)
    goal = (m.group(1) if m else text).strip().splitlines()[0] if text.strip() else ""
    goal = goal.strip().rstrip(".").lower()
    for task_type, pattern in _TASK_PATTERNS:
        if pattern.match(goal):
            return task_type
    return None


@functools.lru_cache(maxsize=1)
def _fewshot_payload() -> dict[str, dict[str, object]]:
    raw = resources.files("precision_gym.prompting").joinpath(_FEWSHOT_RESOURCE).read_text()
    return json.loads(raw)["examples"]


def load_alfworld_fewshot() -> dict[str, str]:
    """Task type -> few-shot example text (intro, a ``think:`` plan, ``> action`` /
    observation lines), from the package data built by ``scripts/build_alfworld_fewshot.py``."""
    return {t: str(ex["text"]) for t, ex in _fewshot_payload().items()}


class ALFWorldReActPrompter(TextPrompter):
    """Append-only ReAct prompt (header, one few-shot example matching the task type, the
    task's initial observation, then ``> action`` / observation pairs) ending with ``>`` so
    the model writes one line.

    ``few_shot``: ``"auto"`` (default) picks the shipped example of the task's type (inferred
    from the goal text, or ``task_type`` when given; ``pick_and_place_simple`` when neither
    is known); ``""`` means no example; any other string is used verbatim.
    """

    sampling = SamplingParams(max_tokens=100, temperature=0.0, stop=("\n",))

    def __init__(
        self, few_shot: str = "auto", allow_think: bool = True, task_type: str | None = None
    ) -> None:
        if task_type is not None and task_type not in ALFWORLD_TASK_TYPES:
            raise ValueError(f"task_type must be one of {ALFWORLD_TASK_TYPES}; got {task_type!r}")
        self.few_shot = few_shot
        self.allow_think = allow_think
        self.task_type = task_type

    def example_for(self, state: AgentState) -> str:
        """The few-shot text used for ``state`` ("" when none)."""
        if self.few_shot != "auto":
            return self.few_shot
        task_type = (
            self.task_type
            or infer_alfworld_task_type(state.initial_observation)
            or infer_alfworld_task_type(state.task_description)
            or "pick_and_place_simple"
        )
        return load_alfworld_fewshot().get(task_type, "")

    def build_prompt(self, state: AgentState) -> Prompt:
        header = "Interact with a household to solve a task. Reply with one command per line" + (
            ", or a line starting with 'think:' to reason." if self.allow_think else "."
        )
        parts = [header]
        example = self.example_for(state)
        if example:
            parts.append("Here is an example.")
            parts.append(example.strip())
        parts.append("Here is the task.")
        parts.append(state.initial_observation.strip())
        for action, obs in zip(state.actions, state.observations, strict=False):
            parts.append(f"> {action}\n{obs.strip()}")
        parts.append(">")
        return "\n".join(parts)

    def parse(self, text: str, admissible_commands: list[str]) -> tuple[str, bool]:
        return cap_action(*parse_alfworld_action(text, admissible_commands))

    def is_thinking(self, text: str) -> bool:
        return _normalise(text).startswith(THINK_PREFIX)


#: deprecated names, served with a DeprecationWarning for one release
__getattr__ = module_aliases(__name__, {"ALFWorldReActAgent": "ALFWorldReActPrompter"}, globals())
