from precision_gym.envs.mixed_precision import MixedPrecisionAgentEnv

__all__ = ["MixedPrecisionAgentEnv"]
