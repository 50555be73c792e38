"""precision-gym: step-level precision routing of LLM agents as a Gymnasium problem.

Importing the package registers ``DMR-ALFWorld-v0``, ``DMR-ALFWorld-v1`` and
``DMR-WebShop-v0``. ALFWorld's v1 differs from v0 in one thing: the expert the SIMULATED tiers
follow has no PDDL planner (walkthrough and undo only), so no planner search runs; see
:class:`precision_gym.tasks.alfworld.ALFWorldTask` (``planner``).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from precision_gym.envs.mixed_precision import MixedPrecisionAgentEnv

__version__ = "0.1.0"
__all__ = ["DEFAULT_ENV_ID", "ENV_IDS", "MixedPrecisionAgentEnv", "__version__"]

#: the env id commands and configs use when none is given
DEFAULT_ENV_ID = "DMR-ALFWorld-v0"
#: every environment id this package registers
ENV_IDS = (DEFAULT_ENV_ID, "DMR-ALFWorld-v1", "DMR-WebShop-v0")

_ENTRY = "precision_gym.envs.mixed_precision:MixedPrecisionAgentEnv"
#: gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point", workers=W, ...)
_VECTOR_ENTRY = "precision_gym.envs.vector:BatchedAgentVectorEnv"
_SPECS = {
    DEFAULT_ENV_ID: {
        "task": "alfworld",
        "tiers": "simulated:alfworld",
        "split": "valid_unseen",
        "max_steps": 50,
    },
    "DMR-ALFWorld-v1": {
        "task": "alfworld-v1",
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
