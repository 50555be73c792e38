from precision_gym.envs.layouts import LAYOUTS, convert_observation
from precision_gym.envs.mixed_precision import MixedPrecisionAgentEnv

__all__ = ["LAYOUTS", "MixedPrecisionAgentEnv", "convert_observation"]
