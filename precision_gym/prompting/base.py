"""Agents: a prompt builder plus a pure text-to-action parser.

The *agent* is the part of the LLM agent that is not the model: it turns the interaction
so far into a prompt, and the model's text back into a task command.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from precision_gym.backends.base import Prompt, SamplingParams

__all__ = ["AgentState", "TextAgent"]


@dataclass
class AgentState:
    """Everything a prompt builder may read."""

    task_description: str
    initial_observation: str
    actions: list[str]
    observations: list[str]
    admissible_commands: list[str]
    step: int


class TextAgent(abc.ABC):
    """Prompt builder + parser for one task family."""

    #: decoding settings for every call of this agent
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
