"""Prompters: the LLM agent's prompt builders and pure text-to-action parsers."""

from precision_gym.deprecation import module_aliases
from precision_gym.prompting.base import AgentState, TextPrompter

__all__ = ["AgentState", "TextPrompter"]

#: deprecated names, served with a DeprecationWarning for one release
__getattr__ = module_aliases(__name__, {"TextAgent": "TextPrompter"}, globals())
