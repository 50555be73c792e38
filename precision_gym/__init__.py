"""precision-gym: step-level precision routing of LLM agents as a Gymnasium problem.

Importing the package registers ``DMR-ALFWorld-v0`` and ``DMR-WebShop-v0``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from precision_gym.envs.mixed_precision import MixedPrecisionAgentEnv

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "MixedPrecisionAgentEnv", "__version__"]

#: every environment id this package registers
ENV_IDS = ("DMR-ALFWorld-v0", "DMR-WebShop-v0")

_ENTRY = "precision_gym.envs.mixed_precision:MixedPrecisionAgentEnv"
#: gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point", workers=W, ...)
_VECTOR_ENTRY = "precision_gym.envs.vector:BatchedAgentVectorEnv"
_SPECS = {
    "DMR-ALFWorld-v0": {
        "task": "alfworld",
        "tiers": "simulated:alfworld",
        "split": "valid_unseen",
        "max_steps": 50,
    },
    "DMR-WebShop-v0": {
        "task": "webshop",
        "tiers": "simulated:webshop",
        "split": "test",
        "max_steps": 30,
    },
}
for _id, _kwargs in _SPECS.items():
    if _id not in registry:
        register(id=_id, entry_point=_ENTRY, vector_entry_point=_VECTOR_ENTRY, kwargs=_kwargs)
