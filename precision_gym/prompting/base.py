"""Prompters: a prompt builder plus a pure text-to-action parser.

The *prompter* is the part of the LLM agent that is not the model: it turns the interaction
so far (the :class:`AgentState`) into a prompt, and the model's text back into a task
command. (The routers that pick a precision per step live in the ``agents`` package.)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from precision_gym.backends.base import Prompt, SamplingParams
from precision_gym.deprecation import module_aliases

__all__ = ["MAX_ACTION_CHARS", "AgentState", "TextPrompter", "cap_action"]

#: longest action a prompter stores (and so re-sends in later prompts): task commands are
#: one short line; a longer parse result is a runaway output, cut here and marked invalid
MAX_ACTION_CHARS = 512


def cap_action(action: str, is_valid: bool) -> tuple[str, bool]:
    """``(action, is_valid)`` with the action cut to :data:`MAX_ACTION_CHARS` (then invalid:
    no game command is that long, so it is never executed)."""
    if len(action) <= MAX_ACTION_CHARS:
        return action, is_valid
    return action[:MAX_ACTION_CHARS], False


@dataclass
class AgentState:
    """The LLM agent's interaction so far: everything a prompter may read."""

    task_description: str
    initial_observation: str
    actions: list[str]
    observations: list[str]
    admissible_commands: list[str]
    step: int


class TextPrompter(abc.ABC):
    """Prompt builder + parser for one task family."""

    #: decoding settings for every call of this prompter
    sampling: SamplingParams = SamplingParams()

    @abc.abstractmethod
    def build_prompt(self, state: AgentState) -> Prompt:
        """The prompt for the next action."""

    @abc.abstractmethod
    def parse(self, text: str, admissible_commands: list[str]) -> tuple[str, bool]:
        """Map model text to ``(command, is_valid)``; must be a pure function."""

    def is_thinking(self, text: str) -> bool:
        """Whether the output is a private thinking step that does not touch the task."""
        return False


#: deprecated names, served with a DeprecationWarning for one release
__getattr__ = module_aliases(__name__, {"TextAgent": "TextPrompter"}, globals())
