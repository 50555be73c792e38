"""Latency cost model of the paper (Eq. 9) and its calibration from logged calls (Eq. 10-11).

Episode time ``T = sum_t (n_t * c_{k_t} + c_router)``: for every decision step ``t`` the
completion tokens ``n_t`` written by the chosen tier ``k_t`` times that tier's per-token
latency, plus the per-call router cost. Steps forced to the highest tier by a task's
protocol (WebShop search steps) carry no router cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from precision_gym.deprecation import renamed_kwarg
from precision_gym.error import ConfigError, lookup

__all__ = [
    "PRESETS",
    "W3_PROJECTION_FACTOR",
    "LatencyCalibrator",
    "LatencyCoefficients",
    "episode_time_s",
    "get_preset",
    "step_time_s",
    "trajectory_return",
]

#: Appendix A.3: projected W3 per-token latency = W4 latency / 1.15
W3_PROJECTION_FACTOR = 1.15


@dataclass(frozen=True)
class LatencyCoefficients:
    """Per-token latency of each tier (ms/token, ordered high -> low) and router ms/call."""

    tier_names: tuple[str, ...]
    ms_per_token: tuple[float, ...]
    router_ms_per_call: float
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.tier_names) != len(self.ms_per_token):
            raise ConfigError(
                f"expected one ms/token coefficient per tier ({len(self.tier_names)} tiers: "
                f"{list(self.tier_names)}), got {len(self.ms_per_token)}"
            )
        if any(c < 0 for c in self.ms_per_token) or self.router_ms_per_call < 0:
            raise ConfigError(
                f"latency coefficients must be >= 0, got ms_per_token={self.ms_per_token}, "
                f"router_ms_per_call={self.router_ms_per_call}"
            )

    @property
    def n_tiers(self) -> int:
        return len(self.ms_per_token)


def step_time_s(
    completion_tokens: int,
    tier: int,
    coeffs: LatencyCoefficients,
    charge_router: bool = True,
    *,
    router_call: bool | None = None,
) -> float:
    """Modeled wall time of one step in seconds (one term of Eq. 9); ``charge_router``:
    the step pays the router's per-call time (``router_call``: its deprecated name)."""
    charge_router = renamed_kwarg(
        "step_time_s", "router_call", router_call, "charge_router", charge_router, True
    )
    if not 0 <= tier < coeffs.n_tiers:
        raise ConfigError(f"tier index must be in [0, {coeffs.n_tiers}), got {tier}")
    if completion_tokens < 0:
        raise ConfigError(f"completion_tokens must be >= 0, got {completion_tokens}")
    ms = completion_tokens * coeffs.ms_per_token[tier]
    if charge_router:
        ms += coeffs.router_ms_per_call
    return ms / 1000.0


def episode_time_s(
    tokens: Sequence[int],
    tiers: Sequence[int],
    coeffs: LatencyCoefficients,
    charge_router: Sequence[bool] | None = None,
    *,
    router_calls: Sequence[bool] | None = None,
) -> float:
    """Eq. 9: ``T = sum_t tokens_t * c_{tier_t} + c_router`` (seconds); ``charge_router``:
    per step, whether it pays the router's time (None: every step does; ``router_calls``:
    its deprecated name)."""
    charge_router = renamed_kwarg(
        "episode_time_s", "router_calls", router_calls, "charge_router", charge_router
    )
    if len(tokens) != len(tiers):
        raise ConfigError(
            f"tokens and tiers must have one entry per step, got {len(tokens)} and {len(tiers)}"
        )
    charged = [True] * len(tokens) if charge_router is None else list(charge_router)
    return sum(step_time_s(n, k, coeffs, c) for n, k, c in zip(tokens, tiers, charged, strict=True))


def trajectory_return(success: float, episode_time: float, cost_weight: float) -> float:
    """Eq. 8: ``R = success - lambda * T``."""
    if cost_weight < 0:
        raise ConfigError(f"cost_weight (lambda) must be >= 0, got {cost_weight}")
    return float(success) - cost_weight * episode_time


def _pair(
    bench: str, model: str, quant: str, high: float, low: float, router: float, low_name: str
) -> LatencyCoefficients:
    return LatencyCoefficients(
        tier_names=("bf16", low_name),
        ms_per_token=(high, low),
        router_ms_per_call=router,
        source=f"paper Table 3: {bench}, {model} / {quant}",
    )


#: The paper's Table 3 (A6000, 16-shard concurrency), ms/token and router ms/call.
PRESETS: dict[str, LatencyCoefficients] = {
    "webshop-qwen3-1.7b-awq-w4": _pair(
        "WebShop", "Qwen3-1.7B", "AWQ-W4", 12.64, 10.29, 22.81, "w4"
    ),
    "webshop-qwen3-1.7b-gptq-w4": _pair(
        "WebShop", "Qwen3-1.7B", "GPTQ-W4", 12.64, 11.51, 22.81, "w4"
    ),
    "webshop-qwen3-4b-awq-w4": _pair("WebShop", "Qwen3-4B", "AWQ-W4", 23.89, 16.36, 29.15, "w4"),
    "webshop-qwen3-4b-gptq-w4": _pair("WebShop", "Qwen3-4B", "GPTQ-W4", 23.89, 16.73, 29.15, "w4"),
    "alfworld-qwen3-1.7b-awq-w4": _pair(
        "ALFWorld", "Qwen3-1.7B", "AWQ-W4", 13.08, 10.23, 17.13, "w4"
    ),
    "alfworld-qwen3-1.7b-gptq-w4": _pair(
        "ALFWorld", "Qwen3-1.7B", "GPTQ-W4", 13.08, 10.30, 17.13, "w4"
    ),
    "alfworld-qwen3-4b-awq-w4": _pair("ALFWorld", "Qwen3-4B", "AWQ-W4", 25.02, 16.77, 19.90, "w4"),
    # W3 is projected: W4 (AWQ, 16.77) / 1.15 = 14.58 ms/token (Appendix A.3)
    "alfworld-qwen3-4b-gptq-w3": _pair(
        "ALFWorld",
        "Qwen3-4B",
        "GPTQ-W3 (projected)",
        25.02,
        round(16.77 / W3_PROJECTION_FACTOR, 2),
        19.90,
        "w3",
    ),
}
# three-tier presets: bf16 > w4 > w3 (w3 projected from w4)
PRESETS["alfworld-qwen3-4b-3tier"] = LatencyCoefficients(
    tier_names=("bf16", "w4", "w3"),
    ms_per_token=(25.02, 16.77, round(16.77 / W3_PROJECTION_FACTOR, 2)),
    router_ms_per_call=19.90,
    source="paper Table 3: ALFWorld, Qwen3-4B, AWQ-W4 and projected W3",
)


def get_preset(name: str) -> LatencyCoefficients:
    """Look a Table-3 preset up by name, with the list of names in the error."""
    return lookup(PRESETS, name, "latency preset")


@dataclass
class LatencyCalibrator:
    """Eq. 10-11 from logged calls: pooled wall time over pooled completion tokens per tier,
    and pooled router time over router calls (forced steps excluded by the caller)."""

    _time: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _router_time: float = 0.0
    _router_calls: int = 0

    def add_call(self, tier: str, wall_time_s: float, completion_tokens: int) -> None:
        if wall_time_s < 0 or completion_tokens < 0:
            raise ConfigError(
                "a logged call needs wall_time_s >= 0 and completion_tokens >= 0, got "
                f"{wall_time_s} and {completion_tokens}"
            )
        self._time[tier] += wall_time_s
        self._tokens[tier] += completion_tokens

    def add_router_call(self, wall_time_s: float) -> None:
        if wall_time_s < 0:
            raise ConfigError(f"router wall_time_s must be >= 0, got {wall_time_s}")
        self._router_time += wall_time_s
        self._router_calls += 1

    def ms_per_token(self, tier: str) -> float:
        """Eq. 10: ``c_k = sum wall time / sum completion tokens`` (ms/token)."""
        if self._tokens.get(tier, 0) == 0:
            raise ConfigError(
                f"no completion tokens logged for tier {tier!r}; logged tiers: "
                f"{sorted(k for k, v in self._tokens.items() if v)}"
            )
        return 1000.0 * self._time[tier] / self._tokens[tier]

    def router_ms_per_call(self) -> float:
        """Eq. 11: ``c_router = sum router time / router calls`` (ms/call)."""
        if self._router_calls == 0:
            raise ConfigError("no router calls logged; expected at least one")
        return 1000.0 * self._router_time / self._router_calls

    def coefficients(
        self, tier_names: Sequence[str], source: str = "calibrated"
    ) -> LatencyCoefficients:
        return LatencyCoefficients(
            tier_names=tuple(tier_names),
            ms_per_token=tuple(self.ms_per_token(t) for t in tier_names),
            router_ms_per_call=self.router_ms_per_call() if self._router_calls else 0.0,
            source=source,
        )
