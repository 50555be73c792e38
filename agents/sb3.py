"""The router's Transformer encoder as a Stable-Baselines3 features extractor.

SB3 algorithms (PPO, A2C, DQN) then share the router's architecture: the step-embedding
sequence goes through input projection, learned positions, a masked Transformer encoder
and last-valid-step pooling; SB3 puts its own policy/value (or Q) heads on top::

    from stable_baselines3 import PPO
    from agents.sb3 import RouterFeaturesExtractor

    model = PPO(
        "MultiInputPolicy",
        env,
        policy_kwargs=dict(
            features_extractor_class=RouterFeaturesExtractor,
            features_extractor_kwargs=dict(d_model=64, n_layers=2, n_heads=4),
            # or dict(router_checkpoint="runs/klst/router.pt"): start from KL-ST weights
        ),
    )

Needs Stable-Baselines3 (``pip install precision-gym[sb3]``). It reads the env's ``dict``
observation layout (the default; ``embeddings`` as ``[max_history, d]``) and, for models of
older versions, a dict whose embeddings are flattened to ``[max_history * d]``.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

__all__ = ["RouterFeaturesExtractor", "init_action_head_from_router"]


class RouterFeaturesExtractor(BaseFeaturesExtractor):
    """SB3 features extractor = :class:`agents.router.TransformerRouter` without its head.

    ``features_dim`` is ``d_model``. Keyword arguments are :class:`RouterConfig` fields
    (``d_model``, ``n_layers``, ``n_heads``, ``dropout``, ``ff_mult``; ``embed_dim`` and
    ``max_len`` come from the observation space). ``router_checkpoint`` (a KL-ST/GRPO router
    file) initialises the encoder from trained router weights instead (its config wins).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        router_checkpoint: str | None = None,
        **router_kwargs: Any,
    ) -> None:
        from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

        if not isinstance(observation_space, spaces.Dict) or {"embeddings", "mask"} - set(
            observation_space.spaces
        ):
            raise ValueError(
                "RouterFeaturesExtractor expects the env's Dict observation with keys "
                f"'embeddings' and 'mask', got {observation_space}"
            )
        max_len = int(observation_space["mask"].shape[0])
        emb_shape = observation_space["embeddings"].shape
        embed_dim = int(emb_shape[-1]) if len(emb_shape) == 2 else int(emb_shape[0]) // max_len
        if router_checkpoint is not None:
            router = TransformerRouterPolicy.load(router_checkpoint).model
            if (router.config.embed_dim, router.config.max_len) != (embed_dim, max_len):
                raise ValueError(
                    f"{router_checkpoint} reads [{router.config.max_len}, "
                    f"{router.config.embed_dim}] observations, the env gives [{max_len}, "
                    f"{embed_dim}]"
                )
        else:
            cfg = {"d_model": 64, "n_layers": 2, "n_heads": 4, "dropout": 0.0, **router_kwargs}
            router = TransformerRouter(RouterConfig(embed_dim=embed_dim, max_len=max_len, **cfg))
        super().__init__(observation_space, features_dim=router.config.d_model)
        router.head = nn.Identity()  # the pooled, normalised last-step state is the feature
        self.router = router
        self.max_len, self.embed_dim = max_len, embed_dim

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        emb, mask = observations["embeddings"], observations["mask"]
        if emb.dim() == 2:  # flattened layout [batch, max_len * d]
            emb = emb.reshape(emb.shape[0], self.max_len, self.embed_dim)
        return self.router(emb, mask)


def init_action_head_from_router(
    policy: Any, router_checkpoint: str, high_bias: float = 0.0
) -> None:
    """Copy a router's action head into an SB3 actor-critic policy, so it routes as the router.

    ``policy`` must read the router's features directly (``RouterFeaturesExtractor`` built
    from the same ``router_checkpoint`` and ``net_arch=dict(pi=[], vf=[...])``): its logits
    are then exactly the router's, plus ``high_bias`` on tier 0 (the operating point of a
    calibrated budget, as GRPO samples it). PPO and GRPO then begin from the same routing.
    """
    from agents.router import TransformerRouterPolicy

    router = TransformerRouterPolicy.load(router_checkpoint).model
    head = router.head
    action_net = getattr(policy, "action_net", None)
    latent = getattr(getattr(policy, "mlp_extractor", None), "latent_dim_pi", None)
    expected = (router.config.d_model, router.config.n_tiers)
    if not isinstance(action_net, nn.Linear) or latent != router.config.d_model:
        found = (
            (action_net.in_features, action_net.out_features)
            if isinstance(action_net, nn.Linear)
            else type(action_net).__name__
        )
        raise ValueError(
            f"init from {router_checkpoint}: expected an actor-critic policy whose action net "
            f"is Linear{expected} on the router's features (net_arch pi=[]), got {found} "
            f"with a policy latent of {latent}"
        )
    if (action_net.in_features, action_net.out_features) != expected:
        raise ValueError(
            f"init from {router_checkpoint}: expected an action net Linear{expected}, got "
            f"Linear{(action_net.in_features, action_net.out_features)}"
        )
    with torch.no_grad():
        action_net.weight.copy_(head.weight)
        action_net.bias.copy_(head.bias)
        action_net.bias[0] += high_bias
