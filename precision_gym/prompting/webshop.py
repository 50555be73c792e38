"""WebShop prompter: a verl-agent style chat prompt and a pure ``<action>`` parser.

The prompt gives the task instruction, the most recent ``history_length`` (observation,
action) pairs, the current observation and the admissible actions, and asks the model to
reason inside ``<think>...</think>`` and answer inside ``<action>...</action>``.
"""

from __future__ import annotations

import re

from precision_gym.backends.base import Prompt, SamplingParams
from precision_gym.deprecation import module_aliases
from precision_gym.error import ConfigError
from precision_gym.prompting.base import AgentState, TextPrompter, cap_action

__all__ = ["SEARCH_TEMPLATE", "WebShopPrompter", "parse_webshop_action"]

#: the admissible-command entry that stands for ``search[<any query>]``
SEARCH_TEMPLATE = "search[...]"

_ACTION_BLOCK_RE = re.compile(r"<action>(.*?)</action>", re.IGNORECASE | re.DOTALL)
_OPEN_ACTION_RE = re.compile(r"<action>(.*)$", re.IGNORECASE | re.DOTALL)
_COMMAND_RE = re.compile(r"(search|click)\s*\[([^\[\]]*)\]", re.IGNORECASE)


def _clickables(admissible: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for command in admissible:
        m = re.fullmatch(r"\s*click\s*\[(.*)\]\s*", command, re.IGNORECASE | re.DOTALL)
        if m:
            out[" ".join(m.group(1).split()).lower()] = command
    return out


def parse_webshop_action(text: str, admissible: list[str]) -> tuple[str, bool]:
    """Map model output to ``(command, is_valid)``; pure.

    The last ``<action>...</action>`` block is read (an unclosed trailing ``<action>`` too);
    without one, the whole text. In it, the last ``search[...]`` or ``click[...]`` is the
    command: click targets and the command word are lower-cased and whitespace-normalised,
    a search query is whitespace-normalised. Valid iff it is ``search[q]`` with a non-empty
    ``q`` while ``search[...]`` is admissible, or ``click[x]`` with ``x`` among the
    admissible clickables (case-insensitive; the admissible spelling is returned). With no
    command found, the stripped block (or ``""``) is returned as invalid.
    """
    blocks = _ACTION_BLOCK_RE.findall(text or "")
    if blocks:
        region = blocks[-1]
    else:
        m = _OPEN_ACTION_RE.search(text or "")
        region = m.group(1) if m else (text or "")
    matches = _COMMAND_RE.findall(region)
    if not matches:
        return " ".join(region.split()), False
    verb, arg = matches[-1]
    verb = verb.lower()
    arg = " ".join(arg.split())
    if verb == "search":
        searchable = any(c.strip().lower() == SEARCH_TEMPLATE for c in admissible)
        return f"search[{arg}]", bool(arg) and searchable
    target = arg.lower()
    clickables = _clickables(admissible)
    if target in clickables:
        return clickables[target], True
    return f"click[{target}]", False


#: how to answer: the end of both templates
_INSTRUCTIONS = """
Now it's your turn to take one action for the current step.
You should first reason step-by-step about the current situation, then think carefully \
which admissible action best advances the shopper's goal. This reasoning process MUST be \
enclosed within <think> </think> tags.
Once you've finished your reasoning, you should choose an admissible action for the \
current step and present it within <action> </action> tags, e.g. \
<action>search[red running shoes]</action> or <action>click[buy now]</action>."""

_TEMPLATE_NO_HISTORY = (
    """You are an expert autonomous agent operating in the WebShop \
e-commerce environment.
Your task is to: {task}.
Your current observation is: {observation}.
Your admissible actions of the current situation are:
[
{actions}
].
"""
    + _INSTRUCTIONS
)

_TEMPLATE = (
    """You are an expert autonomous agent operating in the WebShop e-commerce \
environment.
Your task is to: {task}.
Prior to this step, you have already taken {step_count} step(s). Below are the most recent \
{history_length} observations and the corresponding actions you took: {history}
You are now at step {current_step} and your current observation is: {observation}.
Your admissible actions of the current situation are:
[
{actions}
].
"""
    + _INSTRUCTIONS
)


def _format_actions(admissible: list[str]) -> str:
    shown = ["search[<your query>]" if c == SEARCH_TEMPLATE else c for c in admissible]
    return ",\n".join(f"'{c}'" for c in shown)


class WebShopPrompter(TextPrompter):
    """verl-agent style WebShop prompt (one user message) + :func:`parse_webshop_action`.

    Args:
        history_length: how many of the most recent (observation, action) pairs to show.
    """

    #: the paper samples with a temperature; greedy is the default here, the field stays
    sampling = SamplingParams(max_tokens=512, temperature=0.0)

    def __init__(self, history_length: int = 3) -> None:
        if not isinstance(history_length, int) or history_length < 0:
            raise ConfigError(f"history_length must be an int >= 0, got {history_length!r}")
        self.history_length = history_length

    def build_prompt(self, state: AgentState) -> Prompt:
        actions = _format_actions(list(state.admissible_commands))
        # observation before action k: the initial observation, then each step's result
        before = [state.initial_observation, *state.observations]
        current = before[len(state.actions)] if len(before) > len(state.actions) else before[-1]
        task = state.task_description.strip().rstrip(".")
        if not state.actions or self.history_length == 0:
            content = _TEMPLATE_NO_HISTORY.format(
                task=task, observation=current.strip(), actions=actions
            )
        else:
            n = len(state.actions)
            start = max(0, n - self.history_length)
            entries = [
                f"\n[Observation {k + 1}: '{before[k].strip()}', Action {k + 1}: "
                f"'{state.actions[k]}']"
                for k in range(start, n)
            ]
            content = _TEMPLATE.format(
                task=task,
                step_count=n,
                history_length=n - start,
                history="".join(entries),
                current_step=n + 1,
                observation=current.strip(),
                actions=actions,
            )
        return [{"role": "user", "content": content}]

    def parse(self, text: str, admissible_commands: list[str]) -> tuple[str, bool]:
        return cap_action(*parse_webshop_action(text, admissible_commands))

    def is_thinking(self, text: str) -> bool:
        return False


#: deprecated names, served with a DeprecationWarning for one release
__getattr__ = module_aliases(__name__, {"WebShopAgent": "WebShopPrompter"}, globals())
