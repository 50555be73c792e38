"""The lightweight Transformer router of the paper (Section 4.1, Eq. 3-4).

The input is the env observation: step embeddings ``[L, d_e]`` (left-aligned, up to
``L = 64``) and a valid-step mask. The router projects each embedding to ``d_model``, adds
learned positional embeddings, runs a masked Transformer encoder (padding steps are masked
as keys), pools the last valid step and applies a linear head + softmax over the tiers
(index 0 = highest precision).

:class:`TransformerRouterPolicy` puts it behind the ``RouterPolicy`` contract with
threshold routing (tier 0 iff ``p(tier 0) >= tau``; ``tau`` picked by a calibrated budget
``K``, paper Eq. 7) and saves everything (weights, config, thresholds, metadata) in one
file written atomically.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.base import RouterPolicy
from precision_gym import io as _io
from precision_gym.deprecation import warn_renamed
from precision_gym.error import CheckpointError, ConfigError

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_THRESHOLD",
    "OnlineBudgetControl",
    "RouterConfig",
    "TransformerRouter",
    "TransformerRouterPolicy",
    "load_router_policy",
    "routes_alike",
    "routing_digest",
]

CHECKPOINT_FORMAT = "precision-gym/transformer-router/v1"
#: the naive deployment threshold on p(high) before calibration (paper App. D)
DEFAULT_THRESHOLD = 0.5


@dataclass
class RouterConfig:
    """Architecture of :class:`TransformerRouter`.

    Attributes:
        embed_dim: size of the step embeddings (384 for all-MiniLM-L6-v2).
        max_len: sequence length L (the env's ``max_history``).
        d_model: Transformer width.
        n_layers: encoder layers (the paper's best depth is 8).
        n_heads: attention heads (must divide ``d_model``).
        dropout: dropout inside the encoder layers.
        n_tiers: precision tiers (softmax size).
        ff_mult: feed-forward width as a multiple of ``d_model``.
    """

    embed_dim: int = 384
    max_len: int = 64
    d_model: int = 128
    n_layers: int = 8
    n_heads: int = 4
    dropout: float = 0.1
    n_tiers: int = 2
    ff_mult: int = 2

    def __post_init__(self) -> None:
        for name in ("embed_dim", "max_len", "d_model", "n_layers", "n_heads", "ff_mult"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"RouterConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"RouterConfig.d_model ({self.d_model}) must be divisible by n_heads "
                f"({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"RouterConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.n_tiers < 2:
            raise ConfigError(f"RouterConfig.n_tiers must be >= 2, got {self.n_tiers}")


class TransformerRouter(nn.Module):
    """``pi(m | s_{1:t}) = softmax(W h_last + b)``, ``h = Encoder(W_in e + P)`` (Eq. 3-4)."""

    def __init__(self, config: RouterConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RouterConfig()
        self.input_proj = nn.Linear(cfg.embed_dim, cfg.d_model)
        self.pos_emb = nn.Parameter(torch.zeros(cfg.max_len, cfg.d_model))
        nn.init.normal_(self.pos_emb, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.d_model,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.ff_mult * cfg.d_model,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=cfg.n_layers, enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_tiers)

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_tiers]`` of embeddings ``[B, L, d_e]`` with valid-step mask ``[B, L]``.

        Valid steps must come first (the env's left alignment). Trailing padding is cut
        off before the encoder: padded keys are masked anyway, so the output of the last
        valid step is the same and short histories cost less.
        """
        if embeddings.dim() != 3 or mask.dim() != 2 or embeddings.shape[:2] != mask.shape:
            raise ConfigError(
                "expected embeddings [B, L, d_e] and mask [B, L]; got "
                f"{tuple(embeddings.shape)} and {tuple(mask.shape)}"
            )
        if embeddings.shape[1] > self.config.max_len:
            raise ConfigError(
                f"sequence length {embeddings.shape[1]} exceeds the router's max_len "
                f"{self.config.max_len}"
            )
        valid = mask > 0.5
        lengths = valid.sum(dim=1).clamp(min=1)
        n = int(lengths.max())
        x = self.input_proj(embeddings[:, :n]) + self.pos_emb[:n]
        pad = ~valid[:, :n]
        pad[:, 0] = False  # an empty history still attends to its first slot
        h = self.encoder(x, src_key_padding_mask=pad if bool(pad.any()) else None)
        last = h[torch.arange(h.shape[0], device=h.device), lengths - 1]
        return self.head(self.norm(last))

    def probs(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(embeddings, mask), dim=-1)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Deprecated alias of :func:`precision_gym.io.atomic_torch_save` (moved there beside the
    other atomic writers); this name goes in the next release."""
    _moved("atomic_torch_save")
    return _io.atomic_torch_save(obj, path)


def load_torch_checkpoint(path: Path, expected_format: str, what: str) -> dict[str, Any]:
    """Deprecated alias of :func:`precision_gym.io.load_torch_checkpoint`; this name goes in
    the next release."""
    _moved("load_torch_checkpoint")
    return _io.load_torch_checkpoint(path, expected_format, what)


def _moved(name: str) -> None:
    warnings.warn(
        f"agents.router.{name} moved to precision_gym.io.{name}; the old name goes in the "
        "next release",
        DeprecationWarning,
        stacklevel=3,
    )


def _budget_key(budget: float) -> str:
    return f"{float(budget):.6g}"


def logit(p: float, eps: float = 1e-6) -> float:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]`` (thresholds on p(high))."""
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


#: pacing guard of :class:`OnlineBudgetControl` (high decisions behind / ahead of K * t)
DEFAULT_MAX_DEFICIT = 1.5
_ABOVE_ANY_SCORE = math.nextafter(1.0, 2.0)  # p(high) <= 1 never reaches it


class OnlineBudgetControl:
    """Holds a high-precision budget K on the *deployed* stream of decisions.

    A fixed ``tau_K`` holds K only on the state distribution it was calibrated on; on an
    out-of-distribution test split (ALFWorld's unseen rooms) the router's scores shift and
    the realised rate drifts. This controller sets the threshold for the next decision from
    two parts, in logit space::

        x = logit(q) + step * (H - K * t),   tau = sigmoid(x)

    - ``q``, the **stream quantile**: the ``1 - K`` quantile of the router's own scores
      over the last ``window`` decisions (the calibrated ``tau_K`` until ``warmup``
      decisions have been seen). It re-calibrates Eq. 7 on the deployed scores, so a
      shifted score distribution is absorbed after a few decisions instead of being walked
      off step by step. ``track_quantile=False`` keeps ``q = tau_K``.
    - the **integral term** of adaptive conformal inference (Gibbs & Candes, 2021) over the
      ``t`` decisions so far, ``H`` of them routed high: routing high raises the bar,
      routing low lowers it, so the realised rate is within ``(range of x + step) /
      (step * t)`` of K whatever the score distribution.
    - the **pacing guard** (``max_deficit``, in decisions): when the stream is
      ``max_deficit`` or more high decisions behind ``K * t`` the next decision is routed
      high whatever its score, and low when it is that far ahead; so ``|H - K t|`` stays
      below ``max_deficit + 1`` and a short stream (a few episodes, tens of decisions)
      ends near K even when its last episode scores unlike the rest. ``None`` turns it off.
      A batch of ``N`` decisions (a vector env) is routed at one threshold, so there the
      bound is ``max_deficit + N``.

    The router still decides *which* steps get high precision. Uses only the router's own
    scores, never labels or outcomes. The state persists across episodes (a deployment
    stream); :meth:`reset` restarts it.
    """

    def __init__(
        self,
        budget: float,
        tau0: float,
        step: float = 0.2,
        *,
        track_quantile: bool = True,
        window: int = 512,
        warmup: int | None = None,
        max_deficit: float | None = DEFAULT_MAX_DEFICIT,
    ) -> None:
        if not 0.0 < budget < 1.0:
            raise ValueError(f"online budget control needs K in (0, 1), got {budget}")
        if not step > 0.0:
            raise ValueError(f"online budget control step must be > 0, got {step}")
        if window < 1:
            raise ValueError(f"online budget control window must be >= 1, got {window}")
        if max_deficit is not None and not max_deficit > 0.0:
            raise ValueError(
                f"online budget control max_deficit must be > 0 or None, got {max_deficit}"
            )
        self.max_deficit = None if max_deficit is None else float(max_deficit)
        self.budget, self.step, self.tau0 = float(budget), float(step), float(tau0)
        self.track_quantile, self.window = bool(track_quantile), int(window)
        # enough decisions that the 1 - K quantile has at least one score on each side
        self.warmup = (
            int(math.ceil(1.0 / min(self.budget, 1.0 - self.budget)))
            if warmup is None
            else int(warmup)
        )
        self.reset()

    def reset(self) -> None:
        self.decisions = 0
        self.high = 0
        self.offset = 0.0  # step * (H - K t), the integral term
        self.scores: deque[float] = deque(maxlen=self.window)
        self.x = logit(self.tau0)

    def _base(self) -> float:
        if self.track_quantile and len(self.scores) >= max(self.warmup, 1):
            q = float(np.quantile(np.fromiter(self.scores, float), 1.0 - self.budget))
            return logit(q)
        return logit(self.tau0)

    @property
    def deficit(self) -> float:
        """High decisions owed to the budget so far: ``K * t - H``."""
        return self.budget * self.decisions - self.high

    @property
    def threshold(self) -> float:
        if self.max_deficit is not None:
            if self.deficit >= self.max_deficit:
                return 0.0  # every score clears it: the next decision goes high
            if -self.deficit >= self.max_deficit:
                return _ABOVE_ANY_SCORE  # no score clears it: the next one goes low
        return sigmoid(self.x)

    def update(self, routed_high: np.ndarray, scores: np.ndarray | None = None) -> float:
        """Account for a batch of decisions (and, for the stream quantile, their scores
        ``p(high)``); returns the threshold for the next ones."""
        h = np.asarray(routed_high, dtype=bool).ravel()
        if scores is not None:
            self.scores.extend(np.asarray(scores, dtype=float).ravel().tolist())
        for hit in h:  # one update per decision, in order
            self.offset += self.step * (float(hit) - self.budget)
        base = self._base()
        # anti-windup: the threshold saturates at sigmoid(+-20) and so does the integral
        self.offset = min(max(self.offset, -20.0 - base), 20.0 - base)
        self.x = base + self.offset
        self.decisions += len(h)
        self.high += int(h.sum())
        return self.threshold


@dataclass
class _Calibration:
    thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class TransformerRouterPolicy(RouterPolicy):
    """A :class:`TransformerRouter` behind the ``predict`` contract.

    Routing: ``tier 0`` iff ``high_precision_score(obs) >= threshold``; otherwise the
    argmax among the lower tiers. ``threshold`` is :data:`DEFAULT_THRESHOLD` until a
    calibrated budget is selected (:meth:`set_budget`).
    """

    charge_router = True

    def __init__(
        self,
        model: TransformerRouter,
        thresholds: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
        budget: float | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(model.config.n_tiers)
        self.model = model.eval()
        self.thresholds: dict[str, float] = dict(thresholds or {})
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.budget: float | None = None
        self.online: OnlineBudgetControl | None = None
        self.name = self._base_name()
        if budget is not None:
            self.set_budget(budget)

    @property
    def config(self) -> RouterConfig:
        return self.model.config

    def _base_name(self) -> str:
        """``klst-router``, ``grpo-router``...: from the checkpoint's ``trained_with``."""
        trained = str(self.metadata.get("trained_with", "KL-ST"))
        return "".join(c for c in trained.lower() if c.isalnum()) + "-router"

    def set_budget(self, budget: float | None, online_step: float | None = None) -> None:
        """Route with the threshold calibrated for budget ``K`` (None: the default 0.5).

        ``online_step``: adapt the threshold on the deployed stream from there on
        (:class:`OnlineBudgetControl` with this step in logit units; None = fixed
        ``tau_K``, the paper's Eq. 7)."""
        self.online = None
        if budget is None:
            if online_step is not None:
                raise ValueError("online budget control needs a budget K, got none")
            self.budget, self.threshold = None, DEFAULT_THRESHOLD
            self.name = self._base_name()
            return
        key = _budget_key(budget)
        if key not in self.thresholds:
            have = sorted(float(k) for k in self.thresholds)
            raise CheckpointError(
                f"budget K={budget:g} was not calibrated for this router: calibrated budgets "
                f"are {have or 'none (run precision-gym calibrate)'}"
            )
        self.budget, self.threshold = float(budget), float(self.thresholds[key])
        self.name = f"{self._base_name()}(K={float(budget):g})"
        if online_step is not None:
            self.online = OnlineBudgetControl(float(budget), self.threshold, online_step)
            self.name = f"{self._base_name()}(K={float(budget):g},online)"

    @torch.inference_mode()
    def probs(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Softmax over tiers, ``[batch, n_tiers]`` (a single obs gets a batch of 1)."""
        emb = np.asarray(obs["embeddings"], dtype=np.float32)
        mask = np.asarray(obs["mask"], dtype=np.float32)
        if mask.ndim == 1:
            emb, mask = emb[None], mask[None]
        return self.model.probs(torch.from_numpy(emb), torch.from_numpy(mask)).numpy()

    def high_precision_score(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``p(tier 0 | obs)``, shape ``[batch]`` (``[1]`` for a single observation)."""
        return self.probs(obs)[:, 0]

    def route(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Tier indices from tier probabilities with the threshold rule."""
        tau = self.threshold if threshold is None else threshold
        low = 1 + np.argmax(probs[:, 1:], axis=1)
        return np.where(probs[:, 0] >= tau, 0, low).astype(np.int64)

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        probs = self.probs(obs)
        actions = self.route(probs)
        if self.online is not None:
            self.threshold = self.online.update(actions == 0, scores=probs[:, 0])
        return actions

    # -- persistence ----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.model.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "thresholds": dict(self.thresholds),
            "metadata": dict(self.metadata),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write weights + config + calibrated thresholds + metadata to ONE file, atomically."""
        out = Path(path)
        _io.atomic_torch_save(self.state(), out)
        return out

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        budget: float | None = None,
        online_step: float | None = None,
    ) -> TransformerRouterPolicy:
        """Load a file written by :meth:`save`: ``budget`` K picks its calibrated threshold
        (None = the default threshold 0.5); ``online_step`` adds :class:`OnlineBudgetControl`
        (see :meth:`set_budget`). To load any policy file for an env (a router checked
        against the env's tiers and task, an MLP policy, an SB3 model, a baseline name),
        use ``training.policies.load_policy``."""
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"router checkpoint not found: expected a file at {p.resolve()}")
        ckpt = _io.load_torch_checkpoint(p, CHECKPOINT_FORMAT, "Transformer-router checkpoint")
        known = {f.name for f in fields(RouterConfig)}
        cfg = RouterConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
        model = TransformerRouter(cfg)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"{p}: weights do not match its config ({exc})") from None
        policy = cls(model, ckpt.get("thresholds"), ckpt.get("metadata"), budget=budget)
        if online_step is not None:
            policy.set_budget(budget, online_step=online_step)
        return policy


def _router_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A router file's checkpoint dict (tensors only), or CheckpointError naming the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"router checkpoint not found: expected a file at {path.resolve()}")
    return _io.load_torch_checkpoint(path, CHECKPOINT_FORMAT, "Transformer-router checkpoint")


def routes_alike(a: str | os.PathLike[str], b: str | os.PathLike[str], budget: float) -> bool:
    """Whether two router files (:meth:`TransformerRouterPolicy.save`) route every state alike
    at budget K: the same architecture, every weight equal bit for bit, and the same
    calibrated threshold at K (fixed, or as the start of the online control). Metadata is not
    compared: provenance such as ``trained_with`` changes no decision. A router file without
    a threshold at K is not alike to anything at K.

    A GRPO run that ships its start router, calibrated on KL-ST's calibration episodes, is
    such a pair with KL-ST: an evaluation of one stands for the other on the same episodes."""
    ckpts = [_router_checkpoint(p) for p in (a, b)]
    key = _budget_key(budget)
    thresholds = [dict(c.get("thresholds") or {}) for c in ckpts]
    if any(key not in t for t in thresholds) or thresholds[0][key] != thresholds[1][key]:
        return False
    if ckpts[0]["config"] != ckpts[1]["config"]:
        return False
    sa, sb = (c["state_dict"] for c in ckpts)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def routing_digest(path: str | os.PathLike[str], budgets: Sequence[float]) -> str:
    """SHA-256 of what decides a router file's routing at the budgets ``budgets``: its
    architecture, every weight and its calibrated threshold at each K (``None`` where it has
    none). Two files with one digest route alike at every one of those K
    (:func:`routes_alike`); metadata, and thresholds at other budgets (a later calibration at
    a new K), leave it unchanged. A run folder stores it beside results that came from the
    router, to refuse them for another one."""
    import hashlib

    ckpt = _router_checkpoint(path)
    thresholds = dict(ckpt.get("thresholds") or {})
    h = hashlib.sha256()
    at_k = {_budget_key(k): thresholds.get(_budget_key(k)) for k in budgets}
    h.update(json.dumps([ckpt["config"], at_k], sort_keys=True).encode())
    for name, tensor in sorted(ckpt["state_dict"].items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_router_policy(
    path: str | os.PathLike[str], budget: float | None = None, online_step: float | None = None
) -> TransformerRouterPolicy:
    """Deprecated: ``TransformerRouterPolicy.load(path, budget, online_step)``."""
    warn_renamed("agents.router.load_router_policy", "TransformerRouterPolicy.load")
    return TransformerRouterPolicy.load(path, budget=budget, online_step=online_step)
