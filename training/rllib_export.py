"""RLlib's default PPO model as a portable :class:`agents.mlp.MLPPolicy` file, so an RLlib-
trained router is evaluated by ``precision-gym evaluate --router FILE`` like any other.

::

    module = algo.get_module()                  # the default_policy RLModule
    rllib_module_to_mlp(module, layout="flat").save("runs/rllib/router.pt")

Only the actor path is kept (encoder -> ``pi`` head: the action logits). The copy is checked
against ``module.forward_inference`` on random observations; a module that is not a plain
MLP (an LSTM, attention, a custom encoder) is refused rather than exported wrongly.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.mlp import MLPPolicy
from precision_gym.error import ConfigError

__all__ = ["rllib_module_to_mlp"]


def rllib_module_to_mlp(
    module: Any, layout: str = "flat", metadata: dict[str, Any] | None = None
) -> MLPPolicy:
    """The action-logit path of an RLlib (new API stack) PPO ``RLModule`` as an MLPPolicy."""
    encoder = getattr(module, "encoder", None)
    pi = getattr(module, "pi", None)
    if encoder is None or pi is None:
        raise ConfigError(
            f"expected RLlib's default PPO RLModule (with .encoder and .pi), got "
            f"{type(module).__name__}"
        )
    actor = getattr(encoder, "actor_encoder", None) or getattr(encoder, "encoder", None)
    if actor is None:
        raise ConfigError(f"no actor encoder in {type(encoder).__name__}: cannot export")
    leaves = [m for part in (actor, pi) for m in part.modules() if not list(m.children())]
    policy = MLPPolicy.from_modules(
        leaves, layout, name="rllib-ppo", metadata={"trained_with": "RLlib PPO", **(metadata or {})}
    )
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, policy.in_features, generator=generator) * 2 - 1
    with torch.no_grad():
        want = module.forward_inference({"obs": x})["action_dist_inputs"]
        got = policy.net(x)
    if want.shape != got.shape or not torch.allclose(want, got, atol=1e-5):
        raise ConfigError(
            f"{type(module).__name__} is not a plain MLP from observation to logits: the "
            "exported copy disagrees with forward_inference, so it is not exported"
        )
    return policy
