"""Observation layouts of ``MixedPrecisionAgentEnv``: one table, one concept.

The env keeps the step-embedding history ``[max_history, d]`` and its valid-step mask
``[max_history]`` (valid steps first); a *layout* is how that pair is shown to a policy.
Each layout is a space builder plus a pure function of ``(embeddings, mask)`` that works on
any leading batch shape, so the same code serves the env (one observation) and evaluators
that convert a batch of dict observations into the layout a trained model expects
(:func:`convert_observation`).

========  ==========================================  ==========================================
layout    space                                       use it for
========  ==========================================  ==========================================
``dict``  ``Dict(embeddings=[L, d], mask=[L])``       the Transformer router (default); SB3
                                                      ``MultiInputPolicy`` with
                                                      ``agents.sb3.RouterFeaturesExtractor``
``flat``  ``Box([L * d + L])``: embeddings (row-      generic encoders that take one vector:
          major) then mask                            RLlib's default models, CleanRL MLPs,
                                                      SB3 ``MlpPolicy``
``last``  ``Box([d])``: the latest step's embedding   small / recurrent policies (an LSTM
                                                      carries the history itself)
``mean``  ``Box([d])``: masked mean of the history    small memory-less policies
========  ==========================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from precision_gym.error import ConfigError

__all__ = [
    "LAYOUTS",
    "ObservationLayout",
    "convert_observation",
    "get_layout",
    "layout_of_space",
]


def _dict_space(max_history: int, dim: int) -> spaces.Space:
    return spaces.Dict(
        {
            "embeddings": spaces.Box(-1.0, 1.0, shape=(max_history, dim), dtype=np.float32),
            "mask": spaces.Box(0.0, 1.0, shape=(max_history,), dtype=np.float32),
        }
    )


def _flat_space(max_history: int, dim: int) -> spaces.Space:
    low = np.concatenate(
        [np.full(max_history * dim, -1.0, np.float32), np.zeros(max_history, np.float32)]
    )
    return spaces.Box(low, np.ones_like(low), dtype=np.float32)


def _vector_space(max_history: int, dim: int) -> spaces.Space:
    return spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)


def _as_dict(emb: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"embeddings": emb, "mask": mask}


def _flat(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lead = emb.shape[:-2]
    return np.concatenate([emb.reshape(*lead, -1), mask], axis=-1).astype(np.float32, copy=False)


def _last(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=-1).astype(np.int64)  # valid steps come first: the last is n - 1
    idx = np.maximum(n - 1, 0)[..., None, None]
    last = np.take_along_axis(emb, np.broadcast_to(idx, (*emb.shape[:-2], 1, emb.shape[-1])), -2)
    return np.where((n > 0)[..., None], last[..., 0, :], 0.0).astype(np.float32)


def _mean(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    total = (emb * mask[..., None]).sum(axis=-2)
    count = np.maximum(mask.sum(axis=-1, keepdims=True), 1.0)
    return np.clip(total / count, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class ObservationLayout:
    """One way of showing ``(embeddings [.., L, d], mask [.., L])`` to a policy."""

    name: str
    space: Callable[[int, int], spaces.Space]
    apply: Callable[[np.ndarray, np.ndarray], Any]
    use: str


LAYOUTS: dict[str, ObservationLayout] = {
    layout.name: layout
    for layout in (
        ObservationLayout("dict", _dict_space, _as_dict, "the Transformer router (default)"),
        ObservationLayout("flat", _flat_space, _flat, "RLlib / CleanRL / MlpPolicy encoders"),
        ObservationLayout("last", _vector_space, _last, "recurrent or small policies"),
        ObservationLayout("mean", _vector_space, _mean, "small memory-less policies"),
    )
}


def get_layout(name: str) -> ObservationLayout:
    """The layout called ``name``, or a :class:`ConfigError` listing the valid names."""
    if name not in LAYOUTS:
        raise ConfigError(f"observation_layout must be one of {list(LAYOUTS)}, got {name!r}")
    return LAYOUTS[name]


def _same_box(a: spaces.Space, b: spaces.Space) -> bool:
    return (
        isinstance(a, spaces.Box)
        and isinstance(b, spaces.Box)
        and a.shape == b.shape
        and bool(np.all(a.low == b.low) and np.all(a.high == b.high))
    )


def layout_of_space(space: spaces.Space, max_history: int, dim: int) -> str:
    """Which layout produced ``space`` (a trained model's saved observation space).

    ``"dict-flat"`` is the deprecated ``flatten_embeddings=True`` layout of older models:
    a Dict whose embeddings are one ``[L * d]`` vector. ``last`` and ``mean`` share a space;
    such a space is reported as ``"last|mean"`` (the caller must say which).
    """
    if isinstance(space, spaces.Dict) and set(space.spaces) == {"embeddings", "mask"}:
        shape = space["embeddings"].shape
        if shape == (max_history, dim) and space["mask"].shape == (max_history,):
            return "dict"
        if shape == (max_history * dim,) and space["mask"].shape == (max_history,):
            return "dict-flat"
    elif _same_box(space, _flat_space(max_history, dim)):
        return "flat"
    elif _same_box(space, _vector_space(max_history, dim)):
        return "last|mean"
    raise ConfigError(
        f"observation space {space} matches no observation layout of an env with "
        f"max_history={max_history} and embedding dim {dim}: expected one of "
        f"{ {n: str(lay.space(max_history, dim)) for n, lay in LAYOUTS.items()} }"
    )


def convert_observation(obs: Any, layout: str) -> Any:
    """A ``dict`` layout observation (single or batched) in ``layout``; ``"dict-flat"``
    flattens the embeddings inside the dict (the deprecated layout)."""
    emb = np.asarray(obs["embeddings"], dtype=np.float32)
    mask = np.asarray(obs["mask"], dtype=np.float32)
    if emb.ndim == mask.ndim:  # already row-major flattened embeddings: unflatten first
        emb = emb.reshape(*mask.shape, -1)
    if layout == "dict-flat":
        return {"embeddings": emb.reshape(*mask.shape[:-1], -1), "mask": mask}
    return get_layout(layout).apply(emb, mask)
