"""The ALFWorld expert planner's answers kept on disk, shared by every process that names the
same folder: a benchmark's rollout workers, its evaluation units, a resumed run.

Fast Downward's search is deterministic in the game and the world state, so an answer found
once is the answer every later search of that state would find; a process that reaches a
state another process has planned reads the plan (or the record that the search ran over its
CPU-time bound) instead of searching again. On derailed ALFWorld states one search runs to the
30-CPU-second bound, so this is where repeated evaluations of the same episodes spend their
time (``benchmarks/bench_engine.py`` measures it).

One JSON file per answer, ``<root>/<2 hex>/<sha256>.json``, written atomically (a temporary
file, then ``os.replace``): a reader sees a whole answer or none, and two processes that write
the same answer leave one. The key covers everything the answer depends on: the store format,
TextWorld's and Fast Downward's versions, the game file's content (SHA-256), the world state
(SHA-256 of its sorted facts) and the planner's bounds. Answers cut by a wall-clock bound
depend on the machine's load and are not kept. Files are plain JSON (nothing is unpickled);
one that does not parse as an answer is ignored (warned about once) and searched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path

from precision_gym.error import ConfigError

__all__ = ["PLAN_CACHE_ENV", "PlanStore", "game_digest", "plan_store", "resolve_plan_cache"]

#: environment variable naming the folder of the planner's answers (the default of
#: ``ALFWorldTask(plan_cache=...)``; inherited by worker and unit processes)
PLAN_CACHE_ENV = "PRECISION_GYM_PLAN_CACHE"
#: bump when the meaning of an answer file changes
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
    """A folder of planner answers (see the module's docstring). ``get``/``put`` take the
    game file, the state's digest and the planner's bounds; answers are ``(plan, cut)``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(resolve_plan_cache(root) or "")
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._warned = False
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
        return self.root / name[:2] / f"{name}.json"

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
        """Keep an answer (atomically); False when its cut is not kept (a wall-clock one)."""
        plan, cut = answer
        if cut not in KEPT_CUTS:
            return False
        path = self._path(game_file, state, cpu_s, timeout_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": FORMAT, "plan": list(plan), "cut": cut})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self.writes += 1
        return True

    def stats(self) -> dict[str, int]:
        """Answers read (hits), not found (misses) and written by this process."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "writes": self.writes}

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
