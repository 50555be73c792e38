"""Memoised parsing in TextWorld's PDDL text generation (ALFWorld's engine).

At every step TextWorld's ``PddlEnv`` writes the text of each admissible command (30-60 per
state) by deriving its template through the game's context-sensitive grammar, and each
derivation parses its template again (a tatsu PEG parse, about 2 ms) and deep-copies its
context at every symbol, the entity records included. A ``cProfile`` of GRPO rollouts on
``DMR-ALFWorld-v0`` (3 updates, 530 decisions, simulated tiers) put 56% of the rollout's time
in those parses and 25% in the deep copies; loading a game parses its grammar the same way.
Unprofiled, the memo makes the engine about 9x faster (``benchmarks/RESULTS.md``).

:func:`install` memoises what is pure in that path, so the engine does the same work once per
distinct text:

- ``textgen._parse_and_convert(text, rule_name=...)``, a grammar template's symbol list, and
  ``pddl.logic._parse_and_convert(text, rule_name=...)``, a game's action and grammar block:
  kept per text, and every caller gets a deep copy (callers set each symbol's context), so it
  sees what a fresh parse gives;
- ``Rule.parse_conjunctive_query(expr)``, the rule of a grammar condition: kept per text and
  shared (a ``Rule`` is only read: ``State.all_assignments`` copies the mapping it is given);
- ``textgen.copy_context``: copies the context's ``variables`` and ``mapping`` dicts, not their
  values. Derivation only adds keys to those dicts; the values (``EntityInfo`` records,
  placeholders and variables) are read by the grammar's ``{...}`` expressions, which in
  ALFWorld's grammars are attribute reads such as ``{o.indefinite + ' ' + o.name}``.

The engine's output does not change: ``tests/test_alfworld_task.py`` plays random commands on
games of every task type with and without the memo (:func:`disabled`) and compares every
observation, admissible command list and win flag; ``benchmarks/bench_engine.py`` measures
the speed-up and makes the same check on its own episodes.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["GAME_MEMO_SIZE", "MEMO_SIZE", "disabled", "install", "installed", "stats"]

#: distinct texts kept per memo (least recently used out): ALFWorld's games share a few
#: hundred templates and conditions.
MEMO_SIZE = 4096
#: games whose grammar block is kept (one text per game, about 40 KB parsed): a GRPO group's
#: members and an evaluation's seeds load the same games again.
GAME_MEMO_SIZE = 256

_LOCK = threading.Lock()
_ORIGINALS: dict[str, Any] = {}
_BLOCKED = threading.Event()  # set inside disabled(): install() does nothing
_HITS = {"parse": 0, "miss": 0}


def _memo_parse(original: Any, maxsize: int) -> Any:
    """``original(text, rule_name=...)`` kept per (text, rule_name); each call a deep copy."""

    @functools.lru_cache(maxsize=maxsize)
    def parsed(text: str, rule_name: str) -> Any:
        _HITS["miss"] += 1
        return original(text, rule_name=rule_name)

    def parse_and_convert(*args: Any, **kwargs: Any) -> Any:
        # only the plain form is kept: a trace (TW_CSG_TRACE) or another argument parses anew
        plain = len(args) == 1 and isinstance(args[0], str) and "rule_name" in kwargs
        if not plain or set(kwargs) - {"rule_name", "trace"} or kwargs.get("trace"):
            return original(*args, **kwargs)
        _HITS["parse"] += 1
        return copy.deepcopy(parsed(args[0], kwargs["rule_name"]))

    return parse_and_convert


def _copy_context(context: dict[str, Any]) -> dict[str, Any]:
    """TextWorld's ``copy_context`` with the ``variables`` and ``mapping`` dicts copied, their
    values shared (see the module docstring)."""
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


def _memo_query(original: Any) -> Any:
    """``Rule.parse_conjunctive_query`` kept per expression (the classmethod's function)."""

    @functools.lru_cache(maxsize=MEMO_SIZE)
    def parse_conjunctive_query(cls: type, expr: str) -> Any:
        return original(cls, expr)

    return classmethod(parse_conjunctive_query)


def installed() -> bool:
    """Whether the memo is in TextWorld now."""
    return bool(_ORIGINALS)


def install() -> None:
    """Put the memo into TextWorld's modules (idempotent; process-wide)."""
    import textworld.envs.pddl.logic as pddl_logic
    import textworld.envs.pddl.textgen as textgen
    from textworld.logic import Rule

    with _LOCK:
        if _ORIGINALS or _BLOCKED.is_set():
            return
        _ORIGINALS.update(
            textgen_parse=textgen._parse_and_convert,
            logic_parse=pddl_logic._parse_and_convert,
            copy_context=textgen.copy_context,
            query=Rule.__dict__["parse_conjunctive_query"],
        )
        textgen._parse_and_convert = _memo_parse(_ORIGINALS["textgen_parse"], MEMO_SIZE)
        pddl_logic._parse_and_convert = _memo_parse(_ORIGINALS["logic_parse"], GAME_MEMO_SIZE)
        textgen.copy_context = _copy_context
        Rule.parse_conjunctive_query = _memo_query(_ORIGINALS["query"].__func__)


def _uninstall() -> None:
    import textworld.envs.pddl.logic as pddl_logic
    import textworld.envs.pddl.textgen as textgen
    from textworld.logic import Rule

    with _LOCK:
        if not _ORIGINALS:
            return
        textgen._parse_and_convert = _ORIGINALS["textgen_parse"]
        pddl_logic._parse_and_convert = _ORIGINALS["logic_parse"]
        textgen.copy_context = _ORIGINALS["copy_context"]
        Rule.parse_conjunctive_query = _ORIGINALS["query"]
        _ORIGINALS.clear()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """TextWorld as shipped inside the block (for comparisons), engines built in it included;
    the memo, if it was installed, comes back after it (with empty caches). Not for use while
    other threads run the engine."""
    was = installed()
    _uninstall()
    _BLOCKED.set()
    try:
        yield
    finally:
        _BLOCKED.clear()
        if was:
            install()


def stats() -> dict[str, int]:
    """Template parses served (``parse``) and parses made (``miss``) since import."""
    return dict(_HITS)
