"""The training skeleton shared by KL-ST and GRPO (in the spirit of Stable-Baselines3's
``BaseAlgorithm``): :class:`Trainer` owns the output folder and its overwrite rule, the
atomic tensors-only checkpoint, the safe load, resume (refused when a setting that matters
differs from the checkpoint's), the JSONL log, TensorBoard, the progress bar and the loop
``for step in range(done, total): row = train_step(step); checkpoint; log``. An algorithm
module implements only its step (an epoch, an update) and what its state holds.

Add a trainer: subclass :class:`Trainer`, set the class attributes that name its files
(``checkpoint_file``, ``checkpoint_format``, ``artefacts``, optionally ``log_file``) and
the config fields a resumed run may change (``resumable_fields``), and implement
:attr:`~Trainer.total_steps`, :meth:`~Trainer.train_step` (one step, returning its log row),
:meth:`~Trainer.state_dict` and :meth:`~Trainer.load_state_dict` (the algorithm's tensors
and counters: tensors, numbers, strings, lists and dicts only). Hooks with defaults:
:meth:`~Trainer.should_stop`, :meth:`~Trainer.on_train_start`, :meth:`~Trainer.after_step`,
:meth:`~Trainer.progress_postfix`, :meth:`~Trainer.tensorboard_step`,
:meth:`~Trainer.resume_differences` (which differences still allow a resume).
"""

from __future__ import annotations

import json
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

from precision_gym.error import CheckpointError, ConfigError, ResumeConfigError
from precision_gym.io import (
    atomic_torch_save,
    atomic_write_text,
    load_torch_checkpoint,
    refuse_overwrite,
)

__all__ = [
    "Trainer",
    "append_jsonl",
    "config_defaults",
    "config_diff",
    "read_jsonl",
    "write_jsonl",
]


class Trainer(ABC):
    """Run directory, checkpoint, safe load, resume, logs and the step loop of a trainer.

    Args:
        config: the run's settings, a dataclass; stored in every checkpoint and compared
            field by field on resume (all fields but ``resumable_fields``).
        out: the output folder.
        resume: continue from ``out/checkpoint_file``.
        overwrite: train afresh into a folder that holds a trained run.
        progress: show a progress bar.
        tensorboard: write the numeric fields of every step row to ``out/tb``.

    Without ``resume`` or ``overwrite``, a folder holding one of ``artefacts`` is refused
    here, before any work, so a rerun never replaces a trained result.
    """

    #: checkpoint file name inside ``out`` and its ``format`` tag
    checkpoint_file: ClassVar[str]
    checkpoint_format: ClassVar[str]
    #: what a checkpoint is called in error messages
    checkpoint_what: ClassVar[str] = "training checkpoint"
    #: files that mark a trained run (refused without ``resume``/``overwrite``)
    artefacts: ClassVar[tuple[str, ...]]
    #: the flags that unlock such a folder, as the error message names them
    overwrite_flags: ClassVar[str] = "--resume or --overwrite"
    #: config fields a resumed run may change (budgets, workers, output switches)
    resumable_fields: ClassVar[tuple[str, ...]] = ()
    #: ``resume`` without a checkpoint: an error (True) or a fresh start (False)
    resume_needs_checkpoint: ClassVar[bool] = True
    #: JSONL file of the step rows inside ``out`` (None: no JSONL log)
    log_file: ClassVar[str | None] = None
    #: TensorBoard tag prefix and the row keys not written as scalars
    tensorboard_prefix: ClassVar[str] = "train"
    tensorboard_exclude: ClassVar[tuple[str, ...]] = ()
    #: progress bar label and unit of a step
    progress_desc: ClassVar[str] = "train"
    progress_unit: ClassVar[str] = "step"

    def __init__(
        self,
        config: Any,
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        tensorboard: bool = False,
    ) -> None:
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other: expected one of them")
        self.config = config
        self.out = Path(out)
        self.resume, self.overwrite = resume, overwrite
        self.progress, self.tensorboard = progress, tensorboard
        if not (resume or overwrite):
            refuse_overwrite(self.out, self.artefacts, flags=self.overwrite_flags)
        self.steps_done = 0
        self.history: list[dict[str, Any]] = []
        self.writer: Any = None
        self.wall_s = 0.0

    # -- what an algorithm implements ------------------------------------------------------
    @property
    @abstractmethod
    def total_steps(self) -> int:
        """Steps (epochs, updates) of the whole run."""

    @abstractmethod
    def train_step(self, step: int) -> dict[str, Any]:
        """Run step ``step`` (0-based: the number of steps done before it); return its log
        row (JSON-able: numbers, strings, lists)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The algorithm's state to checkpoint (tensors, numbers, strings, lists, dicts)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- hooks -----------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """Stop before ``total_steps`` (early stopping, a budget of env steps)."""
        return False

    def on_train_start(self) -> None:
        """After a resume or a fresh start, before the first step of this call."""
        return None

    def after_step(self, row: dict[str, Any]) -> None:
        """After a step was checkpointed and logged (evaluations go here)."""
        return None

    def progress_postfix(self, row: dict[str, Any]) -> dict[str, Any]:
        """Values shown beside the progress bar after a step."""
        return {}

    def tensorboard_step(self) -> int:
        """The x value of TensorBoard scalars (default: steps done)."""
        return self.steps_done

    def resume_differences(
        self, diff: dict[str, tuple[Any, Any]], state: dict[str, Any]
    ) -> dict[str, tuple[Any, Any]]:
        """The settings differences (``{field: (checkpoint, now)}``, resumable fields left
        out) that refuse a resume; a trainer drops those its checkpoint ``state`` shows to be
        harmless (a moved input file with the same content)."""
        return diff

    # -- the loop --------------------------------------------------------------------------
    def is_done(self) -> bool:
        return self.steps_done >= self.total_steps or self.should_stop()

    def train(self) -> list[dict[str, Any]]:
        """Resume or start, then run steps until :meth:`is_done`; returns every step row
        of the run (those before a resume included)."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.resume and (self.resume_needs_checkpoint or self.checkpoint_path.exists()):
            self.load_checkpoint()
        if self.log_file is not None:  # rows of a step that never checkpointed are dropped
            write_jsonl(self.history, self.out / self.log_file)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tb"), purge_step=self.steps_done + 1)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self.total_steps,
                initial=self.steps_done,
                desc=self.progress_desc,
                unit=self.progress_unit,
            )
        t0 = time.perf_counter()
        try:
            self.on_train_start()
            while not self.is_done():
                row = self.train_step(self.steps_done)
                self.steps_done += 1
                self.history.append(row)
                self.save_checkpoint()
                self.log(row)
                self.after_step(row)
                if bar is not None:
                    bar.set_postfix(self.progress_postfix(row))
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        self.wall_s = time.perf_counter() - t0
        return self.history

    def log(self, row: dict[str, Any]) -> None:
        """Append ``row`` to the JSONL log and its numbers to TensorBoard."""
        if self.log_file is not None:
            append_jsonl(row, self.out / self.log_file)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in self.tensorboard_exclude:
                    self.writer.add_scalar(
                        f"{self.tensorboard_prefix}/{k}", v, self.tensorboard_step()
                    )
            self.writer.flush()

    # -- checkpoints -----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / self.checkpoint_file

    def save_checkpoint(self) -> Path:
        """Write config, steps done, history and :meth:`state_dict` atomically."""
        state = {
            "format": self.checkpoint_format,
            "config": asdict(self.config),
            "steps_done": self.steps_done,
            "history": self.history,
            **self.state_dict(),
        }
        return atomic_torch_save(state, self.checkpoint_path)

    def load_checkpoint(self) -> None:
        """Load the checkpoint tensors-only, refuse a changed config, restore the state."""
        path = self.checkpoint_path
        if not path.exists():
            raise CheckpointError(f"--resume: expected a checkpoint at {path}, found none")
        state = load_torch_checkpoint(path, self.checkpoint_format, self.checkpoint_what)
        missing = [k for k in ("config", "steps_done", "history") if k not in state]
        if missing:
            raise CheckpointError(
                f"{path} is not a complete {self.checkpoint_what}: expected the entries "
                f"config, steps_done and history, missing {', '.join(missing)}"
            )
        diff = config_diff(
            state["config"],
            asdict(self.config),
            self.resumable_fields,
            defaults=config_defaults(self.config),
        )
        diff = self.resume_differences(diff, state)
        if diff:
            raise ResumeConfigError(
                f"cannot resume from {path}: different configuration (field: (checkpoint, "
                f"now)): {', '.join(f'{k}: {v}' for k, v in diff.items())}; expected the "
                f"checkpoint's settings (only {', '.join(self.resumable_fields) or 'none'} "
                "may change)"
            )
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{path} does not match this {self.checkpoint_what}'s model "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        self.steps_done, self.history = int(state["steps_done"]), list(state["history"])
        print(
            f"resuming from {path} after {self.steps_done} x {self.progress_unit}", file=sys.stderr
        )


def config_diff(
    saved: dict[str, Any],
    now: dict[str, Any],
    ignore: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved, now)}`` for every field of ``now`` outside ``ignore`` whose value
    differs from ``saved``'s (tuples compare equal to lists: a checkpoint stores lists).

    A field missing from ``saved`` (a checkpoint written before the setting existed) stands
    for its value in ``defaults``, where one is given: that run ran with the default, since a
    new setting's default keeps the old behaviour."""
    defaults = defaults or {}

    def old(k: str) -> Any:
        return defaults[k] if k not in saved and k in defaults else saved.get(k)

    return {
        k: (old(k), v) for k, v in now.items() if k not in ignore and _plain(old(k)) != _plain(v)
    }


def config_defaults(config: Any) -> dict[str, Any]:
    """The default of every field of the dataclass ``config`` that has one."""
    if not is_dataclass(config):
        return {}
    out: dict[str, Any] = {}
    for f in fields(config):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file, up to a torn last line (none when the file is missing)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a crash
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    """Replace ``path`` with ``rows``, one JSON object a line, atomically."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(row: dict[str, Any], path: Path) -> None:
    """Append one row (a crash can tear only this line; :func:`read_jsonl` drops it)."""
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
