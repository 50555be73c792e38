"""Precision backends: the contract, the SIMULATED pair, and real LLM backends."""

from precision_gym.backends.base import (
    ActionScore,
    Generation,
    GenerationRequest,
    PrecisionBackend,
    SamplingParams,
    StepContext,
)

__all__ = [
    "ActionScore",
    "Generation",
    "GenerationRequest",
    "PrecisionBackend",
    "SamplingParams",
    "StepContext",
]
