"""Precision tiers: named backends ordered from highest to lowest precision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from precision_gym.backends.base import PrecisionBackend
from precision_gym.cost import LatencyCoefficients, get_preset
from precision_gym.error import ConfigError

__all__ = ["PrecisionTier", "resolve_tiers", "simulated_tiers"]


@dataclass
class PrecisionTier:
    """One precision of the base model: a name (``bf16``, ``w4``) and the backend serving it."""

    name: str
    backend: PrecisionBackend

    @property
    def simulated(self) -> bool:
        return bool(getattr(self.backend, "simulated", False))


def simulated_tiers(
    preset: str = "alfworld", decoding: str = "sample"
) -> tuple[list[PrecisionTier], LatencyCoefficients]:
    """SIMULATED tiers of a preset and the Table-3 latency coefficients it is paired with."""
    from precision_gym.backends.simulated import SimulatedPrecisionPair

    pair = SimulatedPrecisionPair(preset, decoding=decoding)
    tiers = [PrecisionTier(b.name, b) for b in pair.backends()]
    return tiers, get_preset(pair.preset.latency_preset)


def resolve_tiers(
    tiers: Sequence[PrecisionTier] | str,
    latency: LatencyCoefficients | str | None,
) -> tuple[list[PrecisionTier], LatencyCoefficients]:
    """Turn the env's ``tiers``/``latency`` arguments into objects, checking they agree."""
    if isinstance(tiers, str):
        kind, _, preset = tiers.partition(":")
        if kind != "simulated" or not preset:
            raise ConfigError(
                f"tiers given as a string must be 'simulated:<preset>', got {tiers!r}; "
                "pass a list of PrecisionTier for real backends"
            )
        tier_list, default_latency = simulated_tiers(preset)
    else:
        tier_list, default_latency = list(tiers), None
        bad = [t for t in tier_list if not isinstance(t, PrecisionTier)]
        if bad:
            raise ConfigError(
                f"tiers must be PrecisionTier objects (high -> low precision), got {bad[:1]!r}"
            )
    if len(tier_list) < 2:
        raise ConfigError(f"expected at least 2 precision tiers, got {len(tier_list)}")
    coeffs = get_preset(latency) if isinstance(latency, str) else latency
    if coeffs is None:
        coeffs = default_latency
    if coeffs is None:
        raise ConfigError(
            "latency coefficients are required with explicit tiers: pass latency=<Table-3 "
            "preset name> or a LatencyCoefficients (e.g. from LatencyCalibrator)"
        )
    if coeffs.n_tiers != len(tier_list):
        raise ConfigError(
            f"latency coefficients cover {coeffs.n_tiers} tiers {list(coeffs.tier_names)}, "
            f"but {len(tier_list)} tiers were given {[t.name for t in tier_list]}"
        )
    return tier_list, coeffs
