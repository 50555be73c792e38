"""ALFWorld text games through the TextWorld engine (PDDL), as a :class:`TextTask`.

Game files are read from ``$ALFWORLD_DATA/json_2.1.1/<split>/<task_type>-.../<trial>/game.tw-pddl``
(``ALFWORLD_DATA`` defaults to ALFWorld's cache ``~/.cache/alfworld``; ``alfworld-download``
fills it). Games are loaded with ALFWorld's ``AlfredDemangler`` and ``AlfredInfos`` wrappers.

The expert's next command comes from the game's ``walkthrough`` while every deviation from
it has left the world unchanged (navigation, looking, invalid commands): the next walkthrough
command not yet done, or ``go to`` the place it is done at. Once a deviation changed the
world (took, moved, opened... something the walkthrough did not), it is the command that
undoes that deviation (put back what was taken, close what was opened) and, failing that,
the PDDL planner's (TextWorld's ``policy_commands``), memoised per world state. A world
state seen before on the walkthrough's path counts as back on it. The planner costs
0.1-4 s a call here, so it runs only when :meth:`expert_command` is called and needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import select
import signal
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from precision_gym.error import ConfigError, CorruptDataError, DataNotFoundError
from precision_gym.tasks import textworld_memo
from precision_gym.tasks.base import TaskObservation, TextTask, check_split
from precision_gym.tasks.plan_store import PlanStore, plan_store, resolve_plan_cache

__all__ = [
    "HELDOUT_SCENES",
    "TASK_TYPES",
    "ALFWorldTask",
    "alfworld_data_root",
    "command_kind",
    "scene_of",
]

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
KNOWN_SPLITS = ("train", "valid_train", "valid_seen", "valid_unseen")
#: floorplans (ALFRED scene numbers) held out of ``train`` by the derived splits below: the
#: numbers ending in 7, three of each room type (kitchens 1-30, living rooms 201-230, bedrooms
#: 301-330, bathrooms 401-430), as valid_unseen holds one unseen floorplan of each type
HELDOUT_SCENES = (7, 17, 27, 207, 217, 227, 307, 317, 327, 407, 417, 427)
#: splits made from ``train`` by floorplan: ``train_fit`` (the games of every other floorplan)
#: to train on, and ``train_heldout`` (the games of :data:`HELDOUT_SCENES`) to select on, so
#: that a router is chosen on floorplans its training never saw, as the test split's are.
#: ``valid_train`` shares every floorplan with ``train``.
DERIVED_SPLITS = {"train_fit": ("train", False), "train_heldout": ("train", True)}
_MANIPULATION_VERBS = (
    "take",
    "put",
    "move",
    "open",
    "close",
    "heat",
    "cool",
    "clean",
    "use",
    "examine",
    "slice",
    "toggle",
)
_BANNER_RE = re.compile(r"^-= Welcome to TextWorld, ALFRED! =-\s*", re.MULTILINE)
_TASK_RE = re.compile(r"Your task is to:\s*(.+?)\s*$", re.MULTILINE | re.DOTALL)
NOTHING_HAPPENS = "Nothing happens."


def alfworld_data_root() -> Path:
    """``$ALFWORLD_DATA`` or ALFWorld's default cache folder."""
    return Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser()


def command_kind(command: str) -> str:
    """``"navigation"`` for ``go to``, ``"manipulation"`` for object verbs, else ``"other"``."""
    words = command.strip().lower().split()
    if not words:
        return "other"
    if words[0] == "go":
        return "navigation"
    if words[0] in _MANIPULATION_VERBS:
        return "manipulation"
    return "other"


class _LRU:
    """A bounded memo, least recently used out (thread-safe): the translation memo and the
    shared planner answers."""

    def __init__(self, maxsize: int) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class _TranslationCache:
    """Stands in for the ``fast_downward`` module inside TextWorld's PDDL logic and memoises
    ``pddl2sas`` (the PDDL -> SAS translation, pure in its inputs) per (domain, problem).

    TextWorld translates a game's problem twice per ``PddlState`` and builds one state on
    ``load`` and another on every ``reset``: 1-15 s per reset here, spent translating the
    same text again. With the memo a game pays the translation once per process, so
    repeated resets of one task (seeds, GRPO groups) cost what the engine itself costs.

    Inside :func:`_deferred_replan` the second translation (``optimize=True``: the task the
    planner searches, 36% of a game load) is not made: it returns a token that
    :class:`_LazyReplanLib` recognises, and the translation is made when the planner is first
    asked. Every other attribute is the real module's.
    """

    def __init__(self, module: Any, maxsize: int = 64) -> None:
        self._module = module
        # least recently used out: a process running N episodes side by side (a batched
        # env) touches about 2 keys per game at every reset and step
        self._memo = _LRU(maxsize)
        #: the folder of translations shared across processes (set by the task that loads a
        #: game: its ``plan_cache``), or None
        self.store: PlanStore | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def pddl2sas(
        self, domain: str, problem: str, verbose: bool = False, optimize: bool = False
    ) -> Any:
        if optimize and getattr(_DEFER, "active", False):
            _DEFER.key = (domain, problem)
            return None, _DEFERRED_SAS
        return self.memo_pddl2sas(domain, problem, verbose=verbose, optimize=optimize)

    def memo_pddl2sas(
        self, domain: str, problem: str, verbose: bool = False, optimize: bool = False
    ) -> Any:
        """The memoised translation, never deferred. (Not ``translate``: TextWorld reads
        ``fast_downward.translate``, the real module's package, through this object.)"""
        key = (domain, problem, bool(optimize))
        found = self._memo.get(key)
        if found is None:
            store = self.store
            sas = None if store is None else store.get_sas(domain, problem, optimize)
            argv = sys.argv  # the translator sets sys.argv to its own ("translate.py", ...)
            try:
                if sas is not None:
                    found = (_parse_pddl_task(domain, problem), sas)
                else:
                    found = self._module.pddl2sas(
                        domain, problem, verbose=verbose, optimize=optimize
                    )
                    if store is not None:
                        store.put_sas(domain, problem, optimize, found[1])
            finally:
                sys.argv = argv
            self._memo.put(key, found)
        return found


def _parse_pddl_task(domain: str, problem: str) -> Any:
    """The parsed, normalised PDDL task that ``fast_downward.pddl2sas`` returns beside its SAS
    text, without the translation (3 ms, not 130). The same task: parsing and normalising do
    not read the translator's options; checked on all 134 valid_unseen games, optimised or
    not (session 19), and on one game per task type in ``tests/test_plan_store.py``."""
    sys.argv = ["translate.py", "domain", "task"]  # the translator's options parse it on import
    from fast_downward.translate import normalize
    from fast_downward.translate.pddl_parser import lisp_parser, parsing_functions

    with contextlib.redirect_stdout(io.StringIO()):  # its warnings, as the translator hides them
        task = parsing_functions.parse_task(
            lisp_parser.parse_nested_list(domain.split("\n")),
            lisp_parser.parse_nested_list(problem.split("\n")),
        )
        normalize.normalize(task)
    return task


#: what a deferred ``optimize=True`` translation returns in place of the SAS text
_DEFERRED_SAS = "precision-gym: replan task deferred until the planner is asked"
_DEFER = threading.local()


@contextlib.contextmanager
def _deferred_replan() -> Any:
    """While active, ``PddlState`` gets the planner's task only when it plans (this thread)."""
    _DEFER.active, _DEFER.key = True, None
    try:
        yield
    finally:
        _DEFER.active, _DEFER.key = False, None


class _LazyReplanLib:
    """Stands in for a ``PddlEnv``'s Fast Downward library (ctypes) and loads the planner's
    optimised task on the first ``replan`` instead of at every ``load``/``reset``.

    Most episodes never ask the planner (the walkthrough answers the expert while the world
    is unchanged), yet TextWorld translates and loads that task for every game. The library
    keeps the two tasks apart: the optimised one only serves ``replan`` from the current
    state, so loading it late gives the same plans (checked state by state against the eager
    engine in ``tests/test_alfworld_task.py``). Every other attribute is the real library's.
    """

    def __init__(self, lib: Any, translate: Callable[[str, str], str]) -> None:
        self._lib = lib
        self._translate = translate
        self._pending: tuple[str, str] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)

    def load_sas_replan(self, data: bytes) -> None:
        if data == _DEFERRED_SAS.encode("utf-8"):
            if _DEFER.key is None:  # pragma: no cover - only with a token from elsewhere
                raise RuntimeError("a deferred replan task without its PDDL")
            self._pending = _DEFER.key
            return
        self._pending = None
        self._lib.load_sas_replan(data)

    @property
    def replan_pending(self) -> bool:
        return self._pending is not None

    def ensure_replan(self) -> None:
        """Translate and load the planner's task now if it was deferred."""
        if self._pending is None:
            return
        domain, problem = self._pending
        sas = self._translate(domain, problem)
        self._lib.load_sas_replan(sas.encode("utf-8"))
        self._pending = None

    def replan(self, debug: bool) -> Any:
        self.ensure_replan()
        return self._lib.replan(debug)


def _install_translation_cache() -> _TranslationCache:
    import textworld.envs.pddl.logic as pddl_logic

    if not isinstance(pddl_logic.fast_downward, _TranslationCache):
        pddl_logic.fast_downward = _TranslationCache(pddl_logic.fast_downward)
    return pddl_logic.fast_downward


#: The planner's answers in this process, per (game file, world state, bounds): the plan (a
#: tuple) and the bound that cut the search (None if none). The search is deterministic in
#: the game and the state, so a task that reaches a state another task (a GRPO group's other
#: member, an earlier calibration pass) has planned gets the same answer without the search,
#: and acts on it as on its own: a cut answer still counts in its ``planner_timeouts`` and
#: ends its planning for the episode. Keys hold the state's digest (SHA-256 of its sorted
#: facts), not its facts.
_SHARED_PLANS = _LRU(4096)


def _undo_command(command: str) -> str | None:
    """The command that reverses a world-changing one, where there is a simple one."""
    m = re.fullmatch(r"take (.+) from (.+)", command)
    if m:
        return f"move {m.group(1)} to {m.group(2)}"
    m = re.fullmatch(r"(open|close) (.+)", command)
    if m:
        return f"{'close' if m.group(1) == 'open' else 'open'} {m.group(2)}"
    return None


#: CPU-time bound on one planner call, in CPU seconds of the planner's own process (the PDDL
#: search cannot be interrupted in-process). CPU time, unlike wall time, barely depends on what
#: else the machine runs, so whether a search is cut does not depend on load or worker count.
DEFAULT_PLANNER_CPU_S = 30.0
#: wall-clock bound on one planner call (None: none; the CPU-time bound decides)
DEFAULT_PLANNER_TIMEOUT_S: float | None = None


def call_with_timeout(
    fn: Callable[[], Any], timeout_s: float | None, cpu_s: float | None = None
) -> tuple[Any, str | None]:
    """Run ``fn()`` (JSON-serialisable result) in a forked child, bounded by ``cpu_s`` seconds
    of the child's CPU time and by ``timeout_s`` seconds of wall-clock time (None: no such
    bound); returns ``(result, cut)`` where ``cut`` is None when ``fn`` finished, else
    ``"cpu"`` or ``"wall"``: the bound that stopped it. A child that runs over is killed, the
    caller's process state is untouched either way. Without ``fork`` (Windows) or with no
    bound at all the call runs in-process, unbounded.

    The CPU bound is the child's ``RLIMIT_CPU`` (whole seconds, rounded up): the kernel stops
    it with ``SIGXCPU`` (``SIGKILL`` a second later) after that much computing, however long
    it waited for a core, so a search is cut on the same states on a loaded machine as on an
    idle one. The wall bound depends on load; it is a safety net, off by default.

    Used for Fast Downward's ``replan``: a ctypes call into a C search with no time limit,
    which on some off-walkthrough ALFWorld states (goal unreachable after a derailment)
    searches for many minutes."""
    for name, bound in (("timeout_s", timeout_s), ("cpu_s", cpu_s)):
        if bound is not None and not bound > 0:
            raise ConfigError(f"{name} must be > 0 or None, got {bound}")
    if (timeout_s is None and cpu_s is None) or not hasattr(os, "fork"):
        return fn(), None
    r, w = os.pipe()
    with warnings.catch_warnings():  # 3.12+: "fork() of a multi-threaded process"; the
        warnings.simplefilter("ignore", DeprecationWarning)  # child runs no Python threads
        pid = os.fork()
    if pid == 0:  # child: compute, write, exit without running the parent's atexit hooks
        code = 0
        try:
            os.close(r)
            if cpu_s is not None:
                _limit_cpu(math.ceil(cpu_s))
            data = json.dumps(fn()).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(w, view) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    cut: str | None = None
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0 or not select.select([r], [], [], left)[0]:
                cut = "wall"
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status, usage = os.wait4(pid, 0)
    if cut is None and cpu_s is not None and os.WIFSIGNALED(status):
        # the kernel's SIGXCPU, or its SIGKILL at the hard limit; a SIGKILL from elsewhere
        # (the OOM killer) before the bound was spent stays a failure
        spent = usage.ru_utime + usage.ru_stime
        sig = os.WTERMSIG(status)
        if sig in _CPU_SIGNALS and (sig != signal.SIGKILL or spent >= math.ceil(cpu_s) - 0.5):
            cut = "cpu"
    if cut is not None:
        return None, cut
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return json.loads(b"".join(chunks)), None
    raise RuntimeError(f"the planner subprocess failed (wait status {status})")


#: how the kernel ends a child over its RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the
#: hard one
_CPU_SIGNALS = (signal.SIGXCPU, signal.SIGKILL) if hasattr(signal, "SIGXCPU") else ()


def _limit_cpu(seconds: int) -> None:
    """In a forked child: end this process after ``seconds`` of CPU time (no core file)."""
    import resource

    signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # whatever handler the parent installed
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU's default action dumps core
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime)  # a fork starts near 0: count what it used
    soft, hard = spent + seconds, spent + seconds + 1
    _, ceiling = resource.getrlimit(resource.RLIMIT_CPU)  # a job limit (ulimit -t) stays above
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _observation(text: str, state: dict[str, Any], *, valid: bool = True) -> TaskObservation:
    """A TextWorld state as a :class:`TaskObservation` (the game ends when won)."""
    won = bool(state["won"])
    return TaskObservation(
        text=text,
        admissible_commands=list(state["admissible_commands"]),
        won=won,
        done=won,
        score=1.0 if won else 0.0,
        valid=valid,
    )


@lru_cache(maxsize=16)
def _list_games(json_root: str, split: str) -> tuple[str, ...]:
    """The game files of ``split`` (a data folder, or one of :data:`DERIVED_SPLITS`), sorted;
    memoised, as every ``reset`` asks."""
    if split in DERIVED_SPLITS:
        base, held_out = DERIVED_SPLITS[split]
        return tuple(
            g for g in _list_games(json_root, base) if (scene_of(g) in HELDOUT_SCENES) == held_out
        )
    return tuple(str(p) for p in sorted((Path(json_root) / split).glob("*/*/game.tw-pddl")))


def scene_of(game_file: str | Path) -> int:
    """The ALFRED scene (floorplan) number from the game folder name
    (``pick_and_place_simple-Mug-None-Desk-308`` -> 308)."""
    folder = Path(game_file).parent.parent.name
    tail = folder.rsplit("-", 1)[-1]
    if not tail.isdigit():
        raise CorruptDataError(
            f"game folder {folder!r} does not end in a scene number ('-<digits>'): {game_file}"
        )
    return int(tail)


def task_type_of(game_file: str | Path) -> str:
    """Task type from the game folder name (``pick_heat_then_place_in_recep-Egg-...``)."""
    folder = Path(game_file).parent.parent.name
    for t in TASK_TYPES:
        if folder.startswith(t):
            return t
    return folder.split("-")[0]


def _read_walkthrough(game_file: str) -> list[str]:
    """The game's expert walkthrough; a clear error naming the file when it is unreadable."""
    try:
        with open(game_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptDataError(
            f"ALFWorld game file {game_file} is not readable JSON ({type(exc).__name__}: "
            f"{exc}): expected a TextWorld PDDL game (is it truncated?)"
        ) from None
    walk = data.get("walkthrough") if isinstance(data, dict) else None
    if walk is None and isinstance(data, dict):
        walk = []
    if not isinstance(walk, list) or not all(isinstance(c, str) for c in walk):
        raise CorruptDataError(
            f"ALFWorld game file {game_file}: expected 'walkthrough' to be a list of "
            f"commands, got {type(walk).__name__}"
            + ("" if isinstance(data, dict) else f" (the file holds a {type(data).__name__})")
        )
    return list(walk)


class ALFWorldTask(TextTask):
    """ALFWorld games of one data folder, one game loaded at a time.

    Splits are the data's folders (``train``, ``valid_train``, ``valid_unseen``) and, where
    ``train`` is present, two made from it by floorplan: ``train_fit`` and ``train_heldout``
    (the games of :data:`HELDOUT_SCENES`). Train on ``train_fit`` and select or confirm on
    ``train_heldout`` to choose a router on floorplans it never trained on, as valid_unseen's
    are (``valid_train`` shares its floorplans with ``train``).

    Args:
        data_root: folder holding ``json_2.1.1`` (default: ``$ALFWORLD_DATA`` or the cache).
        task_types: keep only these task types (default: all six).
        max_games: keep at most this many games per split (first ones in sorted order).
        planner_cpu_s: bound on one PDDL planner call of the expert, in CPU seconds of the
            planner's own (forked) process (None: no CPU bound). A call that runs over counts
            as "no plan from this state": the expert command is None there (as on a state
            the goal cannot be reached from), memoised per state, counted in
            ``planner_timeouts`` and warned about; the planner is then not asked again in
            that episode (expert None wherever the walkthrough and the undo command do not
            apply), so an episode spends at most one such call on it. A CPU-time bound cuts
            the same searches whatever the machine's load or the number of workers, so the
            simulated tiers' records stay reproducible. Normal calls take 0.1-16 s of wall
            time on a loaded 2-core machine and about 1 CPU second (0.9 median, 1.3 at most
            in 24 calls); runaway searches (a
            derailed world the goal is unreachable from) compute for many minutes.
        planner_timeout_s: a wall-clock bound on the same call (None, the default: none). It
            depends on load: a search cut under load may finish on an idle machine, which
            changes the episode; use it only as a safety net above ``planner_cpu_s``.
        plan_cache: a folder where the planner's answers and Fast Downward's translations of
            the games are kept and shared by every process that names it (default:
            ``$PRECISION_GYM_PLAN_CACHE``, else none): a state any of them has planned is not
            searched again, a search cut by ``planner_cpu_s`` is not run again (the answer,
            cut included, is the one a new search would give), and a game any of them has
            loaded is not translated again (see :mod:`precision_gym.tasks.plan_store`).
            Within one process answers (and the last 64 translations) are shared whether or
            not it is set.
        planner: ask the PDDL planner where the walkthrough and the undo command do not
            apply (True, ``DMR-ALFWorld-v0``). False (``DMR-ALFWorld-v1``): the expert has no
            command there, as on a state the goal cannot be reached from, so a world-changing
            deviation that one command does not undo leaves the agent without a way back
            (SIMULATED tiers then spread over the admissible commands). No search, no
            translation of the planner's task: the planner's searches were about half of a
            GRPO run's time on v0, and all 67 measured fell on derailed episodes.
    """

    name = "alfworld"
    split_roles: ClassVar[dict[str, str]] = {
        "train": "train",
        "calibration": "valid_train",
        "test": "valid_unseen",
    }

    def __init__(
        self,
        data_root: str | os.PathLike[str] | None = None,
        task_types: tuple[str, ...] | list[str] | None = None,
        max_games: int | None = None,
        planner_timeout_s: float | None = DEFAULT_PLANNER_TIMEOUT_S,
        planner_cpu_s: float | None = DEFAULT_PLANNER_CPU_S,
        plan_cache: str | os.PathLike[str] | None = None,
        planner: bool = True,
    ) -> None:
        if not isinstance(planner, bool):
            raise ConfigError(f"planner must be True or False, got {planner!r}")
        #: whether the expert asks the PDDL planner (v0) or stops at the walkthrough and undo (v1)
        self.planner = planner
        self.data_root = Path(data_root).expanduser() if data_root else alfworld_data_root()
        for name, bound in (
            ("planner_timeout_s", planner_timeout_s),
            ("planner_cpu_s", planner_cpu_s),
        ):
            if bound is not None and (isinstance(bound, bool) or not bound > 0):
                raise ConfigError(f"{name} must be > 0 or None, got {bound}")
        self.planner_timeout_s = planner_timeout_s
        self.planner_cpu_s = planner_cpu_s
        #: the folder of the planner's answers and translations shared across processes
        self.plan_cache = resolve_plan_cache(plan_cache)
        #: planner calls cut by ``planner_cpu_s`` or ``planner_timeout_s`` since this task was made
        self.planner_timeouts = 0
        self._planner_gave_up = False
        if task_types is not None:
            unknown = sorted(set(task_types) - set(TASK_TYPES))
            if unknown:
                raise ConfigError(
                    f"unknown ALFWorld task types {unknown}: expected a subset of {list(TASK_TYPES)}"
                )
        self.task_types = tuple(task_types) if task_types is not None else None
        if max_games is not None and max_games < 1:
            raise ConfigError(f"max_games must be >= 1, got {max_games}")
        self.max_games = max_games
        self._engine: Any = None
        self._loaded_file: str | None = None
        self._game_file: str | None = None
        self._split: str | None = None
        self._index: int | None = None
        self._walkthrough: list[str] = []
        self._commands: list[str] = []
        self._progress = 0
        self._dirty = False
        self._undo: tuple[frozenset[str], str | None] | None = None
        self._clean_states: dict[frozenset[str], int] = {}
        self._expert_cache: dict[int, str | None] = {}
        self._plan_memo: dict[frozenset[str], list[str]] = {}
        self._description = ""
        self._last: TaskObservation | None = None

    # -- data ---------------------------------------------------------------------
    @property
    def json_root(self) -> Path:
        return self.data_root / "json_2.1.1"

    def _missing_data_error(self) -> DataNotFoundError:
        return DataNotFoundError(
            f"ALFWorld game files not found: expected {self.json_root}/<split>/*/*/game.tw-pddl "
            f"(ALFWORLD_DATA={os.environ.get('ALFWORLD_DATA', '<unset>')}). Get them with "
            "`pip install alfworld && alfworld-download`, or point ALFWORLD_DATA at the folder "
            "that holds json_2.1.1"
        )

    def splits(self) -> list[str]:
        if not self.json_root.is_dir():
            raise self._missing_data_error()
        found = [s for s in KNOWN_SPLITS if (self.json_root / s).is_dir()]
        return found + [d for d, (base, _) in DERIVED_SPLITS.items() if base in found]

    def games(self, split: str) -> list[str]:
        check_split(self, split, str(self.json_root))
        games = list(_list_games(str(self.json_root), split))
        if self.task_types is not None:
            games = [g for g in games if task_type_of(g) in self.task_types]
        if self.max_games is not None:
            games = games[: self.max_games]
        if not games:
            raise DataNotFoundError(
                f"no game.tw-pddl files for split {split!r} under {self.json_root / split}"
                + (f" with task types {list(self.task_types)}" if self.task_types else "")
            )
        return games

    def num_tasks(self, split: str) -> int:
        return len(self.games(split))

    # -- engine -------------------------------------------------------------------
    def _make_engine(self) -> Any:
        try:
            import textworld
            from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
            from textworld.envs.pddl import PddlEnv
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise DataNotFoundError(
                "the ALFWorld task needs the 'alfworld' package (TextWorld engine); install "
                "it with `pip install 'precision-gym[alfworld]'`"
            ) from exc
        cache = _install_translation_cache()
        textworld_memo.install()  # TextWorld's text generation parses each template once
        infos = textworld.EnvInfos(
            won=True, admissible_commands=True, extras=["gamefile", "walkthrough"]
        )
        env: Any = PddlEnv(infos)
        env.downward_lib = _LazyReplanLib(
            env.downward_lib, lambda d, p: cache.memo_pddl2sas(d, p, optimize=True)[1]
        )
        for wrapper in (AlfredDemangler(), AlfredInfos()):
            env = wrapper(env)
        return env

    def warm_up(self) -> None:
        """Build the TextWorld engine now (imports TextWorld, ALFWorld and Fast Downward:
        about 0.5 s once per process), not on the first ``reset``."""
        if self._engine is None:
            self._engine = self._make_engine()

    def _pddl_env(self) -> Any:
        env = self._engine
        while hasattr(env, "_wrapped_env") and env.__dict__.get("_wrapped_env") is not None:
            env = env.__dict__["_wrapped_env"]
        return env

    def reset(self, split: str, index: int) -> TaskObservation:
        games = self.games(split)
        if not 0 <= index < len(games):
            raise ConfigError(
                f"task_index must be in [0, {len(games)}) for split {split!r}, got {index}"
            )
        game_file = games[index]
        self.warm_up()
        self._share_translations()
        try:
            with _deferred_replan():  # the planner's task: on the first plan, if ever
                if self._loaded_file != game_file:
                    walkthrough = _read_walkthrough(game_file)  # before the engine is touched
                    self._loaded_file = None  # until the engine has really loaded it
                    self._engine.load(game_file)
                    self._loaded_file = game_file
                    self._plan_memo = {}
                    self._walkthrough = walkthrough
                state = self._engine.reset()
        except Exception as exc:
            # the engine may hold half of the new game: drop it (and the old episode) so
            # nothing continues from a mixed state; the next reset() starts a fresh engine
            self._forget_game()
            if isinstance(exc, CorruptDataError):
                raise
            raise CorruptDataError(
                f"ALFWorld game file {game_file} could not be loaded ({type(exc).__name__}: "
                f"{str(exc)[:300]}): expected a TextWorld PDDL game (JSON with pddl_domain, "
                "pddl_problem, grammar and a walkthrough list)"
            ) from exc
        self._split, self._index, self._game_file = split, index, game_file
        self._commands = []
        self._progress = 0
        self._dirty = False
        self._undo = None
        self._clean_states = {self._state_key(): 0}
        self._expert_cache = {}
        self._planner_gave_up = False
        text = _BANNER_RE.sub("", state["feedback"]).strip()
        match = _TASK_RE.search(text)
        self._description = match.group(1).strip() if match else ""
        self._last = _observation(text, state)
        return self._last

    def _forget_game(self) -> None:
        """Back to the freshly constructed state: no engine, no game, no episode."""
        if self._engine is not None:
            with contextlib.suppress(Exception):  # a half-loaded engine may not close cleanly
                self._engine.close()
        self._engine = None
        self._loaded_file = self._game_file = self._split = self._index = None
        self._last = None
        self._walkthrough, self._commands = [], []
        self._plan_memo, self._expert_cache = {}, {}

    def _require_loaded(self) -> None:
        if self._last is None:
            raise ConfigError("no ALFWorld game is loaded: call reset(split, index) first")

    def step(self, command: str) -> TaskObservation:
        self._require_loaded()
        assert self._last is not None
        q = self._effective_progress(self._last.admissible_commands)
        plan = self._plan_memo.get(self._state_key()) if self._dirty else None
        self._commands.append(command)
        state, _, _ = self._engine.step(command)
        feedback = str(state["feedback"]).strip()
        valid = feedback != NOTHING_HAPPENS
        was_dirty = self._dirty
        if valid and q < len(self._walkthrough) and command == self._walkthrough[q]:
            self._progress = q + 1
        elif (
            valid and command_kind(command) == "manipulation" and not command.startswith("examine")
        ):
            self._dirty = True  # the world now differs from the walkthrough's
        if valid:
            key = self._state_key()
            if self._dirty and key in self._clean_states:  # a deviation was undone
                self._dirty, self._progress = False, self._clean_states[key]
            elif not self._dirty:
                self._clean_states.setdefault(key, self._progress)
            elif not was_dirty:  # the first world-changing deviation: remember its undo
                self._undo = (key, _undo_command(command))
            if plan and command == plan[0]:
                # a suffix of an optimal plan is optimal: no need to ask the planner again
                self._plan_memo.setdefault(key, plan[1:])
        self._last = _observation(feedback, state, valid=valid)
        return self._last

    def expert_command(self) -> str | None:
        self._require_loaded()
        assert self._last is not None
        n = len(self._commands)
        if n in self._expert_cache:
            return self._expert_cache[n]
        cmd = None if self._last.won else self._walkthrough_expert()
        if cmd is None and self._dirty and self._undo is not None:
            key, undo = self._undo
            if undo in self._last.admissible_commands and key == self._state_key():
                cmd = undo
        if cmd is None and not self._last.won:
            plan = self._plan()
            cmd = plan[0] if plan else None
        self._expert_cache[n] = cmd
        return cmd

    def _state_key(self) -> frozenset[str]:
        """The world state as a set of facts (``not_*`` bookkeeping facts, which PDDL actions
        leave behind, are not part of it)."""
        return frozenset(
            str(f) for f in self._pddl_env()._pddl_state.facts if not f.name.startswith("not_")
        )

    def _plan(self) -> list[str]:
        """The planner's plan from the current world state, memoised per state for the game
        (states recur: back-and-forth loops, invalid commands)."""
        if not self.planner:  # DMR-ALFWorld-v1: the expert has no command past the undo
            return []
        key = self._state_key()
        if key not in self._plan_memo and self._planner_gave_up:
            return []  # once a search ran over in an episode, the planner is not asked again
        if key not in self._plan_memo:
            facts = hashlib.sha256("\n".join(sorted(key)).encode()).hexdigest()
            shared_key = (self._game_file, facts, self.planner_cpu_s, self.planner_timeout_s)
            found = _SHARED_PLANS.get(shared_key)
            store = None if self.plan_cache is None else plan_store(self.plan_cache)
            if found is None and store is not None:
                found = store.get(*shared_key)
                if found is not None:
                    _SHARED_PLANS.put(shared_key, found)
            if found is None:
                pddl = self._pddl_env()
                self._load_replan_task(pddl)  # here, not in the child: it stays for later plans
                plan, cut = call_with_timeout(
                    lambda: list(pddl._pddl_state.replan(pddl._entity_infos) or []),
                    self.planner_timeout_s,
                    self.planner_cpu_s,
                )
                found = (tuple(plan or ()), cut)
                _SHARED_PLANS.put(shared_key, found)
                if store is not None:
                    store.put(*shared_key, found)
            plan, cut = found
            if cut is not None:
                self.planner_timeouts += 1
                self._planner_gave_up = True
                bound = (
                    f"planner_cpu_s={self.planner_cpu_s:g} CPU s"
                    if cut == "cpu"
                    else f"planner_timeout_s={self.planner_timeout_s:g} s"
                )
                warnings.warn(
                    f"ALFWorld planner: no plan within {bound} for {self.task_id} after "
                    f"{len(self._commands)} commands; the expert has no command on this state",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._plan_memo[key] = list(plan or [])
        return self._plan_memo[key]

    def _share_translations(self) -> None:
        """Point the process's translation memo at this task's folder (or at none)."""
        _install_translation_cache().store = (
            None if self.plan_cache is None else plan_store(self.plan_cache)
        )

    def _load_replan_task(self, pddl: Any) -> None:
        """Translate and load the planner's (optimised) task if ``reset`` deferred it."""
        lib = pddl.downward_lib
        if not getattr(lib, "replan_pending", False):
            return
        self._share_translations()
        try:
            lib.ensure_replan()
        except Exception as exc:
            raise CorruptDataError(
                f"ALFWorld game file {self._game_file}: the planner's task could not be "
                f"translated ({type(exc).__name__}: {str(exc)[:300]}): expected a PDDL problem "
                "that Fast Downward can translate"
            ) from exc

    def _walkthrough_expert(self) -> str | None:
        """Next walkthrough command (or the way to its place) while the world is unchanged."""
        if self._dirty:
            return None
        assert self._last is not None
        admissible = set(self._last.admissible_commands)
        walk = self._walkthrough
        q = self._effective_progress(self._last.admissible_commands)
        if q >= len(walk):
            return None
        if walk[q] in admissible:
            return walk[q]
        place = next((c for c in reversed(walk[:q]) if c.startswith("go to ")), None)
        return place if place in admissible else None

    def _effective_progress(self, admissible_commands: list[str]) -> int:
        """Walkthrough progress, skipping ``go to X`` steps when the agent is already at X
        (ALFWorld lists every ``go to`` except the current place)."""
        admissible = set(admissible_commands)
        q = self._progress
        walk = self._walkthrough
        while q < len(walk) and walk[q].startswith("go to ") and walk[q] not in admissible:
            q += 1
        return q

    def step_kind(self, command: str) -> str:
        return command_kind(command)

    # -- metadata -----------------------------------------------------------------
    @property
    def game_file(self) -> str:
        self._require_loaded()
        assert self._game_file is not None
        return self._game_file

    @property
    def task_id(self) -> str:
        path = Path(self.game_file)
        return f"{self._split}/{path.parent.parent.name}/{path.parent.name}"

    @property
    def task_type(self) -> str:
        return task_type_of(self.game_file)

    @property
    def description(self) -> str:
        self._require_loaded()
        return self._description

    @property
    def walkthrough(self) -> list[str]:
        self._require_loaded()
        return list(self._walkthrough)

    @property
    def commands(self) -> list[str]:
        return list(self._commands)

    # -- pickling: drop the engine, replay the commands on first use -----------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_engine"] = None
        state["_loaded_file"] = None
        # plans are recomputed on demand; "no plan" entries (timeouts) are kept so a clone
        # answers exactly as the original does
        state["_plan_memo"] = {k: v for k, v in self._plan_memo.items() if not v}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("planner", True)  # pickled before v1 existed: v0's expert
        self.__dict__.update(state)
        if self._split is not None and self._index is not None:
            commands = self._commands
            expert_cache = self._expert_cache
            no_plan, gave_up = self._plan_memo, self._planner_gave_up
            self.reset(self._split, self._index)
            for cmd in commands:
                self.step(cmd)
            self._expert_cache = expert_cache
            self._plan_memo.update(no_plan)
            self._planner_gave_up = gave_up

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self._loaded_file = None
