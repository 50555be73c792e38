"""A feed-forward policy over a vector observation layout, in a portable checkpoint.

What generic RL libraries train on this env is usually an MLP over one vector (RLlib's
default PPO model, a CleanRL agent, SB3's ``MlpPolicy``). :class:`MLPPolicy` holds such a
network (``Linear`` layers and element-wise activations) with the observation layout it
reads (``flat``, ``last`` or ``mean``, see ``precision_gym.envs.layouts``) and writes it as
one tensors-only file (loaded with ``torch.load(weights_only=True)``: nothing unpickled),
which ``precision-gym evaluate --router FILE`` reads like the other routers::

    MLPPolicy.from_modules([actor.fc1, nn.Tanh(), actor.fc2], layout="flat").save("agent.pt")

Actions are the tier logits' argmax (``deterministic=True``, what the evaluator uses) or a
sample from their softmax drawn with the policy's own seeded generator.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.base import RouterPolicy
from precision_gym.envs.layouts import convert_observation
from precision_gym.error import CheckpointError, ConfigError
from precision_gym.io import atomic_torch_save, load_torch_checkpoint

__all__ = ["ACTIVATIONS", "MLP_CHECKPOINT_FORMAT", "MLPPolicy"]

MLP_CHECKPOINT_FORMAT = "precision-gym/mlp-policy/v1"
#: element-wise activations a checkpoint may name
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}
_VECTOR_LAYOUTS = ("flat", "last", "mean")


def _spec_of(modules: Iterable[nn.Module]) -> tuple[list[dict[str, Any]], nn.Sequential]:
    names = {cls: name for name, cls in ACTIVATIONS.items()}
    spec: list[dict[str, Any]] = []
    layers: list[nn.Module] = []
    for m in modules:
        if isinstance(m, nn.Linear):
            spec.append({"type": "linear", "in": m.in_features, "out": m.out_features})
            layer = nn.Linear(m.in_features, m.out_features)
            layer.load_state_dict({"weight": m.weight.detach(), "bias": _bias(m)})
            layers.append(layer)
        elif type(m) in names:
            spec.append({"type": names[type(m)]})
            layers.append(type(m)())
        elif isinstance(m, (nn.Identity, nn.Flatten)) or (
            isinstance(m, nn.Sequential) and len(m) == 0
        ):
            continue
        else:
            raise ConfigError(
                f"MLPPolicy takes Linear layers and activations ({sorted(ACTIVATIONS)}), got "
                f"{type(m).__name__}"
            )
    return spec, nn.Sequential(*layers)


def _bias(m: nn.Linear) -> torch.Tensor:
    return m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)


class MLPPolicy(RouterPolicy):
    """An MLP over one vector observation layout -> tier logits.

    Args:
        net: ``nn.Sequential`` of ``Linear`` layers and activations; input size must match
            the layout, output size is the number of tiers.
        layout: the observation layout it reads (``flat``, ``last`` or ``mean``).
        name: the name reported by the evaluator.
        metadata: free-form JSON-able facts saved with it (who trained it, how).
    """

    charge_router = True
    reads_any_layout = True

    def __init__(
        self,
        net: nn.Sequential,
        layout: str,
        name: str = "mlp",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if layout not in _VECTOR_LAYOUTS:
            raise ConfigError(f"MLPPolicy layout must be one of {_VECTOR_LAYOUTS}, got {layout!r}")
        linears = [m for m in net if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError("MLPPolicy needs at least one Linear layer, got none")
        super().__init__(linears[-1].out_features)
        self.net = net.eval()
        self.layout = layout
        self.name = name
        self.metadata = dict(metadata or {})
        self.in_features = linears[0].in_features
        self._rng = np.random.default_rng(0)

    @classmethod
    def from_modules(
        cls,
        modules: Iterable[nn.Module],
        layout: str,
        name: str = "mlp",
        metadata: dict[str, Any] | None = None,
    ) -> MLPPolicy:
        """Copy ``modules`` (Linear layers and activations, in forward order) into a policy."""
        _, net = _spec_of(modules)
        return cls(net, layout, name=name, metadata=metadata)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    @torch.no_grad()
    def logits(self, obs: Any) -> np.ndarray:
        """Tier logits ``[batch, n_tiers]`` (or ``[n_tiers]``) for a dict or layout obs."""
        x = convert_observation(obs, self.layout) if isinstance(obs, dict) else np.asarray(obs)
        if x.shape[-1] != self.in_features:
            raise ConfigError(
                f"{self.name} reads {self.in_features}-value '{self.layout}' observations, got "
                f"shape {x.shape}: make the env with observation_layout={self.layout!r} or "
                "pass its dict observation"
            )
        return self.net(torch.as_tensor(x, dtype=torch.float32)).numpy()

    def _predict_any(self, obs: Any, deterministic: bool) -> np.ndarray:
        logits = self.logits(obs)
        if deterministic:
            return logits.argmax(axis=-1)
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        flat = p.reshape(-1, p.shape[-1])
        actions = np.array([self._rng.choice(len(row), p=row) for row in flat], dtype=np.int64)
        return actions.reshape(p.shape[:-1])

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        return self._predict_any(obs, deterministic).reshape(-1)

    # -- persistence ----------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write layers + weights + layout + metadata to one tensors-only file, atomically."""
        spec, _ = _spec_of(self.net)
        state = {
            "format": MLP_CHECKPOINT_FORMAT,
            "layout": self.layout,
            "layers": spec,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "metadata": dict(self.metadata),
        }
        return atomic_torch_save(state, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], name: str | None = None) -> MLPPolicy:
        """Load a file written by :meth:`save` (``weights_only``: nothing is unpickled)."""
        p = Path(path)
        ckpt = load_torch_checkpoint(p, MLP_CHECKPOINT_FORMAT, "MLP policy")
        layers: list[nn.Module] = []
        for entry in ckpt["layers"]:
            kind = entry.get("type")
            if kind == "linear":
                layers.append(nn.Linear(int(entry["in"]), int(entry["out"])))
            elif kind in ACTIVATIONS:
                layers.append(ACTIVATIONS[kind]())
            else:
                raise CheckpointError(
                    f"{p}: unknown layer type {kind!r}: expected 'linear' or one of "
                    f"{sorted(ACTIVATIONS)}"
                )
        net = nn.Sequential(*layers)
        try:
            net.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"{p}: weights do not match its layers ({exc})") from None
        return cls(net, ckpt["layout"], name=name or f"mlp:{p.stem}", metadata=ckpt["metadata"])
