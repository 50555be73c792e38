"""An opt-in on-disk cache of greedy generations for real tiers (SQLite).

GRPO groups and repeated evaluations revisit the same states; with greedy decoding
(``temperature == 0``) a tier's answer to a prompt is fixed, so :class:`CachedBackend` stores
it once, keyed by (tier, model, sampling parameters, prompt), and returns the stored text,
completion tokens and the *measured* wall time of the original call on every revisit (the
cost model charges tokens, so a hit costs the episode what the first call cost). Sampled calls
(``temperature > 0``) are never cached. The file may be shared by several processes (SQLite
locking, WAL journal); writes are one transaction each.

Enable it per env: ``gym.make(..., generation_cache="runs/generations.sqlite")`` wraps every
non-simulated tier; ``info["generation_cache"]`` then reports hits, misses and the hit rate.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from precision_gym.backends.base import (
    ActionScore,
    Generation,
    GenerationRequest,
    Prompt,
    SamplingParams,
)
from precision_gym.error import ConfigError

__all__ = ["CachedBackend", "GenerationCache"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    completion_tokens INTEGER NOT NULL,
    wall_time_s REAL NOT NULL,
    prompt_tokens INTEGER
)"""


class GenerationCache:
    """A SQLite table of generations keyed by a hash of (tier, model, sampling, prompt)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ConfigError(f"generation cache must be a file path, got directory {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"generation cache {self.path} is not a precision-gym SQLite cache ({exc})"
            ) from None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tier: str, model: str, params: SamplingParams, prompt: Prompt) -> str:
        blob = json.dumps(
            {"tier": tier, "model": model, "params": asdict(params), "prompt": prompt},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Generation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, completion_tokens, wall_time_s, prompt_tokens FROM generations "
                "WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return Generation(row[0], int(row[1]), float(row[2]), row[3], meta={"cache": "hit"})

    def put(self, key: str, gen: Generation) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)",
                (key, gen.text, gen.completion_tokens, gen.wall_time_s, gen.prompt_tokens),
            )
            self._db.commit()

    def record(self, hit: bool) -> None:
        """Count one lookup (thread-safe: tiers may look up from several threads)."""
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def stats(self) -> dict[str, float]:
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hit_rate}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "hits": self.hits, "misses": self.misses}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]
        self.hits, self.misses = state["hits"], state["misses"]


class CachedBackend:
    """A tier's backend behind a :class:`GenerationCache` (greedy calls only)."""

    def __init__(self, backend: Any, cache: GenerationCache) -> None:
        self.backend = backend
        self.cache = cache
        self.name = backend.name
        self.simulated = bool(getattr(backend, "simulated", False))
        self.retries_faults = bool(getattr(backend, "retries_faults", False))
        self.needs_expert = bool(getattr(backend, "needs_expert", False))
        self.concurrent_calls = bool(getattr(backend, "concurrent_calls", False))
        self.model = str(getattr(backend, "model", "") or getattr(backend, "model_dir", ""))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(requests)
        todo: list[int] = []
        keys: dict[int, str] = {}
        for i, req in enumerate(requests):
            if req.params.temperature > 0:  # sampled: never cached
                todo.append(i)
                continue
            keys[i] = self.cache.key(self.name, self.model, req.params, req.prompt)
            hit = self.cache.get(keys[i])
            if hit is None:
                todo.append(i)
            else:
                self.cache.record(hit=True)
                out[i] = hit
        if todo:
            gens = self.backend.generate([requests[i] for i in todo])
            for i, gen in zip(todo, gens, strict=True):
                out[i] = gen
                if i in keys:  # a miss counts once its generation is stored
                    self.cache.record(hit=False)
                    self.cache.put(keys[i], gen)
        return out  # type: ignore[return-value]

    def score(self, prompt: Prompt, action: str) -> ActionScore:
        return self.backend.score(prompt, action)

    def close(self) -> None:
        self.backend.close()

    def __getattr__(self, name: str) -> Any:  # call_log, health, ... of the wrapped backend
        backend = self.__dict__.get("backend")
        if backend is None:
            raise AttributeError(name)
        return getattr(backend, name)
