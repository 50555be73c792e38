"""The contract between the environment and a multi-step text task (ALFWorld, WebShop)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

from precision_gym.error import DataNotFoundError, lookup

__all__ = ["TaskObservation", "TextTask"]


@dataclass
class TaskObservation:
    """What a task engine returns after ``reset`` or ``step``.

    Attributes:
        text: the observation text shown to the agent (for the first observation, the
            initial scene; the task description is in :attr:`TextTask.description`).
        admissible_commands: the commands the engine accepts in this state.
        won: the task's success condition holds.
        done: the episode is over for the engine (won, or a terminal purchase on WebShop).
        score: task score in [0, 1] (ALFWorld: 1.0 when won; WebShop: the purchase reward).
        valid: whether the command that produced this observation changed the state.
    """

    text: str
    admissible_commands: list[str]
    won: bool = False
    done: bool = False
    score: float = 0.0
    valid: bool = True
    extra: dict = field(default_factory=dict)


class TextTask(abc.ABC):
    """A pool of text games split into named splits, one game loaded at a time.

    Subclasses must be cheap to construct (no game loaded until :meth:`reset`) and must
    be picklable by value of their constructor arguments (``__getstate__`` may drop the
    live engine; the env replays actions to restore it).
    """

    #: short name used in registries, CLI and logs ("alfworld", "webshop")
    name: str = "task"
    #: which split plays which role in the paper's protocol (train: KL supervision and RL;
    #: calibration: the disjoint pool for budget thresholds; test: reported results)
    split_roles: ClassVar[dict[str, str]] = {
        "train": "train",
        "calibration": "valid",
        "test": "test",
    }

    def split_for(self, role: str) -> str:
        """The split that plays ``role`` (``"train"``, ``"calibration"`` or ``"test"``)."""
        return lookup(self.split_roles, role, "split role")

    @abc.abstractmethod
    def splits(self) -> list[str]:
        """Names of the splits present in the data."""

    @abc.abstractmethod
    def num_tasks(self, split: str) -> int:
        """Number of games in ``split``; raises DataNotFoundError for an unknown split."""

    @abc.abstractmethod
    def reset(self, split: str, index: int) -> TaskObservation:
        """Load game ``index`` of ``split`` (reusing it when already loaded) and reset it."""

    @abc.abstractmethod
    def step(self, command: str) -> TaskObservation:
        """Execute one command. An inadmissible command changes nothing."""

    @abc.abstractmethod
    def expert_command(self) -> str | None:
        """The expert's next command from the current state (None once won).

        May be expensive (a planner call): implementations compute it lazily and cache
        it per state, and the env asks for it only when a caller needs it.
        """

    @property
    @abc.abstractmethod
    def task_id(self) -> str:
        """Stable identifier of the loaded game."""

    @property
    @abc.abstractmethod
    def task_type(self) -> str:
        """Task family of the loaded game (e.g. ``pick_heat_then_place_in_recep``)."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """The natural-language goal of the loaded game."""

    def step_kind(self, command: str) -> str:
        """Kind of a command, used by simulated models and routing protocols.

        ALFWorld: ``"navigation"`` or ``"manipulation"``; WebShop: ``"search"`` or ``"click"``.
        """
        return "action"

    def pending_step_kind(self) -> str | None:
        """Kind of the *next* step when the state alone determines it, else None.

        WebShop: ``"search"`` on the search page, ``"click"`` elsewhere. ALFWorld: None
        (navigation vs manipulation depends on the command the model writes).
        """
        return None

    def forced_high(self, kind: str | None) -> bool:
        """Whether a pending step of this kind goes to the highest tier by protocol.

        Such steps are executed by the env inside the transition: they are not a router
        decision and are not charged router cost (e.g. WebShop's search-step forcing).
        """
        return False

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Import and build what the engine needs once per process (modules, parsers), so
        that a missing engine fails here and the first ``reset`` costs what any other does.
        Called when an env is built in this process and by a task worker before it reports
        ready; idempotent."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources."""


def check_split(task: TextTask, split: str, where: str) -> None:
    """Raise a clear error when ``split`` is not one of the task's splits."""
    available = task.splits()
    if split not in available:
        raise DataNotFoundError(
            f"unknown split {split!r} for task {task.name!r}: expected one of "
            f"{sorted(available)} (looked in {where})"
        )
