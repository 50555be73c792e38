"""The ALFWorld expert planner's answers and tasks kept on disk, shared by every process that
names the same folder: a benchmark's rollout workers, its evaluation units, a resumed run.

Two things, both pure functions of their inputs and costly to compute:

- **answers** (``plans/``): Fast Downward's search is deterministic in the game and the world
  state, so an answer found once is the answer every later search of that state would find.
  A process that reaches a state another process has planned reads the plan (or the record
  that the search ran over its CPU-time bound) instead of searching; off the walkthrough one
  search takes up to several CPU seconds. The key: the store format, TextWorld's and Fast
  Downward's versions, the game file's content (SHA-256), the world state (SHA-256 of its
  sorted facts) and the planner's bounds. Answers cut by a wall-clock bound depend on the
  machine's load and are not kept.
- **translations** (``sas/``): Fast Downward's PDDL -> SAS translation of a game, which
  TextWorld runs at every game load (about 0.13 s; a process keeps the last 64 in memory,
  fewer than an evaluation's 134 games). Keyed by the format, Fast Downward's version, the
  optimisation flag and the PDDL texts; kept gzip-compressed (about 40 KB). On a hit the
  PDDL task is parsed and normalised again (3 ms), as the translator does before translating.

Each file is written atomically (:func:`precision_gym.io.atomic_write_bytes`: a temporary
file, fsync, then ``os.replace``; the usual ``0666 & ~umask`` mode): a reader sees a whole
file or none, and two processes that write the same one leave one. Files are JSON or text
(nothing is unpickled); one that does not read as what it should be is ignored (warned about
once) and computed again. ``benchmarks/ppo_vs_grpo.py`` keeps one folder per run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
import warnings
import zlib
from functools import lru_cache
from pathlib import Path

from precision_gym.error import ConfigError
from precision_gym.io import atomic_write_bytes

__all__ = ["PLAN_CACHE_ENV", "PlanStore", "game_digest", "plan_store", "resolve_plan_cache"]

#: environment variable naming the folder of the planner's answers and translations (the default of
#: ``ALFWorldTask(plan_cache=...)``; inherited by worker and unit processes)
PLAN_CACHE_ENV = "PRECISION_GYM_PLAN_CACHE"
#: bump when the meaning of an answer or translation file changes
FORMAT = 1
#: the cuts whose answers are kept: none (the search finished) or the CPU-time bound
KEPT_CUTS = (None, "cpu")


@lru_cache(maxsize=1)
def _engine_versions() -> tuple[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("textworld", "fast-downward-textworld"):
        try:
            found.append(version(name))
        except PackageNotFoundError:
            found.append("?")
    return found[0], found[1]


@lru_cache(maxsize=1024)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def game_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a game file's bytes (memoised per path, size and modification time)."""
    st = os.stat(path)
    return _file_digest(os.fspath(path), st.st_size, st.st_mtime_ns)


class PlanStore:
    """A folder of planner answers and translations (see the module's docstring).
    ``get``/``put`` take the game file, the state's digest and the planner's bounds (answers
    are ``(plan, cut)``); ``get_sas``/``put_sas`` the PDDL texts and the optimisation flag."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(resolve_plan_cache(root) or "")
        self.hits = self.misses = self.writes = 0
        self.sas_hits = self.sas_misses = 0
        self._warned = self._warned_write = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PlanStore({str(self.root)!r})"

    def _path(
        self, game_file: str, state: str, cpu_s: float | None, timeout_s: float | None
    ) -> Path:
        textworld, downward = _engine_versions()
        ident = json.dumps(
            [FORMAT, textworld, downward, game_digest(game_file), state, cpu_s, timeout_s]
        )
        name = hashlib.sha256(ident.encode()).hexdigest()
        return self.root / "plans" / name[:2] / f"{name}.json"

    def get(
        self, game_file: str, state: str, cpu_s: float | None, timeout_s: float | None
    ) -> tuple[tuple[str, ...], str | None] | None:
        """The stored answer for this state, or None (not stored, or unreadable)."""
        path = self._path(game_file, state, cpu_s, timeout_s)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            with self._lock:
                self.misses += 1
            return None
        except (OSError, ValueError) as exc:
            self._warn(path, f"{type(exc).__name__}: {exc}")
            return None
        plan = data.get("plan") if isinstance(data, dict) else None
        cut = data.get("cut") if isinstance(data, dict) else None
        if (
            not isinstance(plan, list)
            or not all(isinstance(c, str) for c in plan)
            or cut not in KEPT_CUTS
        ):
            self._warn(path, 'expected {"plan": [str, ...], "cut": null or "cpu"}')
            return None
        with self._lock:
            self.hits += 1
        return tuple(plan), cut

    def put(
        self,
        game_file: str,
        state: str,
        cpu_s: float | None,
        timeout_s: float | None,
        answer: tuple[tuple[str, ...], str | None],
    ) -> bool:
        """Keep an answer (atomically); False when its cut is not kept (a wall-clock one) or
        the folder cannot be written."""
        plan, cut = answer
        if cut not in KEPT_CUTS:
            return False
        text = json.dumps({"format": FORMAT, "plan": list(plan), "cut": cut})
        return self._write(self._path(game_file, state, cpu_s, timeout_s), text.encode())

    def _write(self, path: Path, data: bytes) -> bool:
        """Write atomically (:func:`precision_gym.io.atomic_write_bytes`: a temporary file in
        the same folder, fsync, then ``os.replace``). A folder that cannot be written (full
        disk, no permission) costs the sharing, not the run: warned about once, False."""
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            if not self._warned_write:
                self._warned_write = True
                warnings.warn(
                    f"cannot write to the plan folder {self.root} ({type(exc).__name__}: "
                    f"{exc}); this process computes what it cannot keep",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return False
        with self._lock:
            self.writes += 1
        return True

    # -- the planner's tasks: Fast Downward's translation of a game's PDDL ----------------
    def _sas_path(self, domain: str, problem: str, optimize: bool) -> Path:
        digest = hashlib.sha256()
        for part in (str(FORMAT), _engine_versions()[1], str(bool(optimize)), domain, problem):
            digest.update(part.encode())
            digest.update(b"\0")
        name = digest.hexdigest()
        return self.root / "sas" / name[:2] / f"{name}.sas.gz"

    def get_sas(self, domain: str, problem: str, optimize: bool) -> str | None:
        """The stored translation (SAS text) of this PDDL domain and problem, or None."""
        path = self._sas_path(domain, problem, optimize)
        try:
            sas = gzip.decompress(path.read_bytes()).decode("utf-8")
        except FileNotFoundError:
            with self._lock:
                self.sas_misses += 1
            return None
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            self._warn(path, f"{type(exc).__name__}: {exc}")
            return None
        if not sas.startswith("begin_version"):
            self._warn(path, "expected Fast Downward's SAS text (begin_version ...)")
            return None
        with self._lock:
            self.sas_hits += 1
        return sas

    def put_sas(self, domain: str, problem: str, optimize: bool, sas: str) -> bool:
        """Keep a translation (gzip, atomically); False when the folder cannot be written."""
        return self._write(
            self._sas_path(domain, problem, optimize), gzip.compress(sas.encode(), 1)
        )

    def stats(self) -> dict[str, int]:
        """Answers read (hits) and not found (misses), translations read and not found, and
        files written by this process."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "sas_hits": self.sas_hits,
                "sas_misses": self.sas_misses,
                "writes": self.writes,
            }

    def _warn(self, path: Path, why: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"planner answer {path} is unreadable ({why}); searching again",
                RuntimeWarning,
                stacklevel=3,
            )


_STORES: dict[str, PlanStore] = {}
_STORES_LOCK = threading.Lock()


def resolve_plan_cache(value: str | os.PathLike[str] | None) -> str | None:
    """The folder named by ``value``, else by ``$PRECISION_GYM_PLAN_CACHE``, else None
    (validated: not an empty name, not a file)."""
    if value is None:
        value = os.environ.get(PLAN_CACHE_ENV) or None
    if value is None:
        return None
    if not str(value).strip():
        raise ConfigError(f"plan_cache must name a folder, got {str(value)!r}")
    path = Path(value).expanduser().absolute()  # workers may start in another folder
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"plan_cache must be a folder (or a path to create one at), got the file {path}"
        )
    return str(path)


def plan_store(root: str) -> PlanStore:
    """This process's store for the folder ``root`` (one per folder, so its counts add up)."""
    with _STORES_LOCK:
        if root not in _STORES:
            _STORES[root] = PlanStore(root)
        return _STORES[root]
