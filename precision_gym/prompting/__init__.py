"""Agents' prompt builders and pure text-to-action parsers."""

from precision_gym.prompting.base import AgentState, TextAgent

__all__ = ["AgentState", "TextAgent"]
