"""Atomic file writes: everything the library persists (checkpoints, shards, logs, JSON)
goes through a temp file in the same folder, fsync, then ``os.replace``, so a crash never
leaves a truncated file behind. Files get the usual ``0666 & ~umask`` mode (0644 under the
common umask 022), not ``mkstemp``'s private 0600, so a shared results folder stays readable.

Torch checkpoints are written the same way (:func:`atomic_torch_save`) and read back
tensors-only (:func:`load_torch_checkpoint`: ``torch.load(weights_only=True)``), so a planted
file cannot run code.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from precision_gym.error import CheckpointError, ConfigError

__all__ = [
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "current_umask",
    "load_torch_checkpoint",
    "refuse_overwrite",
    "replacing",
]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it: the window is kept private)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` would give a new file."""
    return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating the folder) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` of ``obj`` (tensors, numbers, strings, lists and dicts of them: what
    :func:`load_torch_checkpoint` reads back) to ``path``, atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_torch_checkpoint(
    path: str | os.PathLike[str], expected_format: str, what: str
) -> dict[str, Any]:
    """A tensors-only torch checkpoint (``weights_only``: nothing is unpickled) whose
    ``format`` entry is ``expected_format``; :class:`CheckpointError` naming ``what`` else."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or code-carrying file
        raise CheckpointError(
            f"{what} {path} is corrupt or not a torch file, or not a tensors-only file: "
            f"expected a tensors-only torch file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != expected_format:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a {what}: expected format {expected_format!r}, found {found!r}"
        )
    return ckpt


def check_output_path(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """Check an output file path before any work: not empty, not a folder, its folder
    creatable and writable. Raises :class:`ConfigError` naming what was expected."""
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError(f"{flag} expects a file path, got an empty string")
    out = Path(text)
    if out.is_dir():
        raise ConfigError(f"{flag} expects a file path, got the existing folder {out}")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out}: expected a writable folder, {parent} is not writable")
    return out


def refuse_overwrite(
    folder: str | os.PathLike[str],
    artefacts: Iterable[str],
    *,
    flags: str = "--resume or --overwrite",
) -> None:
    """Raise :class:`ConfigError` when ``folder`` already holds one of ``artefacts`` (file
    names of a trained result), so a rerun never silently replaces a trained artefact."""
    root = Path(folder)
    found = [name for name in artefacts if (root / name).exists()]
    if found:
        raise ConfigError(
            f"{root} already holds a trained run ({', '.join(found)}): {found[0]} exists: "
            f"pass {flags} to use it, or choose another --out (expected an empty or new "
            "output folder)"
        )


@contextlib.contextmanager
def replacing(folder: str | os.PathLike[str], names: Iterable[str]) -> Iterator[Path]:
    """Run a body that rewrites ``folder``'s entries ``names`` (files or folders) from scratch.

    The old entries are moved (renamed) into a hidden side folder first, so the body starts
    clean and no file of the earlier run is left beside the new ones. When the body succeeds
    the old entries are deleted; when it raises, whatever it wrote under those names is removed
    and the old entries are moved back, so a failed rerun leaves the earlier run as it was.
    Yields the side folder (``folder/.replaced``).
    """
    root = Path(folder)
    side, done = root / ".replaced", root / ".replaced-done"
    shutil.rmtree(done, ignore_errors=True)
    if side.exists():  # left by a process killed mid-run: its entries are the older run's
        _restore(root, side)
    moved = [n for n in names if (root / n).exists() or (root / n).is_symlink()]
    if moved:
        side.mkdir(parents=True)
        for name in moved:
            os.replace(root / name, side / name)
    try:
        yield side
    except BaseException:
        _restore(root, side)
        raise
    if side.exists():  # renamed first: a crash while deleting cannot restore half of it
        os.replace(side, done)
        shutil.rmtree(done, ignore_errors=True)


def _restore(root: Path, side: Path) -> None:
    for entry in sorted(side.iterdir()):
        target = root / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)
    side.rmdir()
