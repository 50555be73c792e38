"""Multi-step text tasks: ALFWorld (TextWorld engine) and WebShop (the project's engine)."""

from precision_gym.tasks.base import TaskObservation, TextTask

__all__ = ["TaskObservation", "TextTask"]
