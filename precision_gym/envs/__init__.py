from precision_gym.envs.layouts import LAYOUTS, convert_observation
from precision_gym.envs.mixed_precision import MixedPrecisionAgentEnv

__all__ = ["LAYOUTS", "BatchedAgentVectorEnv", "MixedPrecisionAgentEnv", "convert_observation"]


def __getattr__(name: str) -> object:  # the vector env imports gymnasium.vector lazily
    if name == "BatchedAgentVectorEnv":
        from precision_gym.envs.vector import BatchedAgentVectorEnv

        return BatchedAgentVectorEnv
    raise AttributeError(name)
