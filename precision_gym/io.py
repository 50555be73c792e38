"""Atomic file writes: everything the library persists (checkpoints, shards, logs, JSON)
goes through a temp file in the same folder, fsync, then ``os.replace``, so a crash never
leaves a truncated file behind. Files get the usual ``0666 & ~umask`` mode (0644 under the
common umask 022), not ``mkstemp``'s private 0600, so a shared results folder stays readable.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from precision_gym.error import ConfigError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "current_umask",
    "refuse_overwrite",
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
        with os.fdopen(fd, "wb") as f:
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
            f"{root} already holds a trained run ({', '.join(found)}): expected an empty or "
            f"new output folder; pass {flags} to use it, or choose another --out"
        )
