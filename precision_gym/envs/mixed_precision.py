"""``MixedPrecisionAgentEnv``: each Gymnasium step is one router decision of an LLM agent.

At each agent step the router (the RL policy) picks a precision tier; that tier's model
writes the agent's action; the task executes it. The observation is the frozen
sentence-encoder embedding of every step so far (previous action + observation; the first
step is task description + initial observation) with a valid-step mask.

Reward (paper Eq. 8-9), ``reward_mode="sparse"`` (default): 0 on every step and
``success - lambda * T`` at the end, ``T = sum_t tokens_t * c_{tier_t} + c_router``.
``reward_mode="dense"`` pays ``-lambda * t_step`` every step and ``success`` at the end:
the same sum.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from precision_gym.backends.base import StepContext
from precision_gym.backends.cache import CachedBackend, GenerationCache
from precision_gym.cost import LatencyCoefficients, trajectory_return
from precision_gym.deprecation import module_aliases, renamed_attribute, renamed_kwarg
from precision_gym.embedding import SentenceEncoder
from precision_gym.envs.agent_step import (
    NOTHING_HAPPENS,
    THINK_REPLY,
    AgentStepper,
    Episode,
    LocalTaskSlots,
    RetryPolicy,
    _Expert,
    agent_state,
    draw_task,
    step_context,
)
from precision_gym.envs.layouts import get_layout
from precision_gym.error import ConfigError, InvalidActionError, PrecisionGymError
from precision_gym.prompting.base import AgentState, TextPrompter
from precision_gym.tasks.base import TextTask
from precision_gym.tiers import PrecisionTier, resolve_tiers

__all__ = [
    "NOTHING_HAPPENS",
    "REWARD_MODES",
    "THINK_REPLY",
    "MixedPrecisionAgentEnv",
    "make_prompter",
    "make_task",
]

REWARD_MODES = ("sparse", "dense")


def make_task(task: TextTask | str, task_kwargs: dict[str, Any] | None = None) -> TextTask:
    """A task object from a name (``"alfworld"``, ``"alfworld-v1"``: ALFWorld whose expert
    has no planner, ``"webshop"``) or the object itself."""
    if isinstance(task, TextTask):
        if task_kwargs:
            raise ConfigError("task_kwargs only apply when task is given by name")
        return task
    kwargs = dict(task_kwargs or {})
    if task in ("alfworld", "alfworld-v1"):
        from precision_gym.tasks.alfworld import ALFWorldTask

        if task == "alfworld-v1":
            if "planner" in kwargs:
                raise ConfigError(
                    "task 'alfworld-v1' (DMR-ALFWorld-v1) is ALFWorld without the expert's "
                    f"planner: expected no planner in task_kwargs, got planner={kwargs['planner']!r}"
                    " (task 'alfworld', DMR-ALFWorld-v0, has the planner)"
                )
            kwargs["planner"] = False
        return ALFWorldTask(**kwargs)
    if task == "webshop":
        from precision_gym.tasks.webshop import WebShopTask

        return WebShopTask(**kwargs)
    raise ConfigError(
        f"unknown task {task!r}: expected 'alfworld', 'alfworld-v1', 'webshop' or a TextTask"
    )


def make_prompter(task: TextTask) -> TextPrompter:
    """The default prompter (prompt builder + parser) of a task family."""
    if task.name == "alfworld":
        from precision_gym.prompting.alfworld import ALFWorldReActPrompter

        return ALFWorldReActPrompter()
    if task.name == "webshop":
        from precision_gym.prompting.webshop import WebShopPrompter

        return WebShopPrompter()
    raise ConfigError(
        f"no default prompter for task {task.name!r}: expected prompter=<TextPrompter>"
    )


def _int_arg(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; floats (even 2.0), bools and strings are refused."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _real_arg(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0 (nan, inf, negatives and bools are refused)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if not (math.isfinite(float(value)) and value >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _bool_arg(name: str, value: Any) -> bool:
    """``value`` as a bool; strings such as ``"no"`` (truthy in Python) are refused."""
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class MixedPrecisionAgentEnv(gym.Env[Any, np.int64]):
    """Step-level precision routing of an LLM agent on a multi-step text task.

    Args:
        task: a :class:`TextTask` or its name (``"alfworld"``, ``"webshop"``).
        task_kwargs: constructor arguments when ``task`` is a name.
        prompter: prompt builder + parser (default: the task family's,
            :func:`make_prompter`).
        tiers: precision tiers ordered high -> low, or ``"simulated:<preset>"``.
        latency: Table-3 preset name or :class:`LatencyCoefficients` (default: the
            simulated preset's own).
        encoder: a :class:`SentenceEncoder` or a model name/folder.
        split: split episodes are drawn from unless ``reset(options={"split": ...})``.
        max_steps: agent steps per episode (truncation).
        max_history: steps kept in the observation (the oldest are dropped).
        cost_weight: lambda of Eq. 8, per second of modeled episode time.
        reward_mode: ``"sparse"`` or ``"dense"`` (same return).
        max_retries / retry_backoff_s: retries of backend faults for backends that do
            not retry themselves (the HTTP backend retries per request and is called once);
            after them the episode ends as failed with ``info["backend_error"]``.
        generation_cache: path of an SQLite file caching greedy generations of the real
            tiers (:mod:`precision_gym.backends.cache`); ``info["generation_cache"]`` then
            holds hits, misses and the hit rate. None (default): no cache.
        step_timeout_s: deadline of one agent step's generation, all attempts and backoff
            included (None: none); a hung server costs at most this per step.
        observation_layout: how the step-embedding history is observed
            (``precision_gym.envs.layouts``): ``"dict"`` (default: ``embeddings
            [max_history, d]`` + ``mask``, the Transformer router's input), ``"flat"`` (one
            ``Box``: embeddings row-major then mask; RLlib's and CleanRL's default encoders,
            SB3 ``MlpPolicy``), ``"last"`` (the latest step's embedding, ``[d]``) or
            ``"mean"`` (masked mean of the history, ``[d]``).
        flatten_embeddings: deprecated alias of ``observation_layout="flat"``.
        agent: deprecated name of ``prompter``.
        render_mode: ``None``, ``"ansi"`` (the transcript as text), ``"human"`` (the
            transcript printed at each step) or ``"rgb_array"`` (the transcript drawn as an
            image, for video recorders).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "human", "rgb_array"],
        "render_fps": 4,
    }

    #: deprecated name of ``prompter``
    agent = renamed_attribute("agent", "prompter")

    def __init__(
        self,
        task: TextTask | str = "alfworld",
        task_kwargs: dict[str, Any] | None = None,
        prompter: TextPrompter | None = None,
        tiers: Sequence[PrecisionTier] | str = "simulated:alfworld",
        latency: LatencyCoefficients | str | None = None,
        encoder: SentenceEncoder | str | None = "all-MiniLM-L6-v2",
        split: str = "valid_unseen",
        max_steps: int = 50,
        max_history: int = 64,
        cost_weight: float = 0.02,
        reward_mode: str = "sparse",
        max_retries: int = 3,
        retry_backoff_s: float = 0.5,
        step_timeout_s: float | None = 180.0,
        generation_cache: str | os.PathLike[str] | None = None,
        observation_layout: str = "dict",
        flatten_embeddings: bool | None = None,
        render_mode: str | None = None,
        agent: TextPrompter | None = None,
    ) -> None:
        prompter = renamed_kwarg("MixedPrecisionAgentEnv", "agent", agent, "prompter", prompter)
        max_steps = _int_arg("max_steps", max_steps, 1)
        max_history = _int_arg("max_history", max_history, 1)
        cost_weight = _real_arg("cost_weight (lambda)", cost_weight)
        if reward_mode not in REWARD_MODES:
            raise ConfigError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        max_retries = _int_arg("max_retries", max_retries, 0)
        retry_backoff_s = _real_arg("retry_backoff_s", retry_backoff_s)
        if not isinstance(split, str):
            raise ConfigError(f"split must be a split name (str), got {split!r}")
        RetryPolicy(max_retries, retry_backoff_s, step_timeout_s)  # checks the values
        if flatten_embeddings is not None:
            flatten_embeddings = _bool_arg("flatten_embeddings", flatten_embeddings)
            warnings.warn(
                "flatten_embeddings is deprecated: use observation_layout='flat' (one Box: "
                "embeddings then mask) instead",
                DeprecationWarning,
                stacklevel=2,
            )
            if flatten_embeddings:
                if observation_layout not in ("dict", "flat"):
                    raise ConfigError(
                        "flatten_embeddings=True conflicts with observation_layout="
                        f"{observation_layout!r}: pass only observation_layout"
                    )
                observation_layout = "flat"
        layout = get_layout(observation_layout)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.task = make_task(task, task_kwargs)
        self.prompter = prompter if prompter is not None else make_prompter(self.task)
        self.tiers, self.latency = resolve_tiers(tiers, latency)
        for t in self.tiers:  # a simulated tier models one task family's action errors
            modelled = getattr(t.backend, "task_name", None)
            if modelled is not None and modelled != self.task.name:
                raise ConfigError(
                    f"tier {t.name!r} simulates the {modelled!r} task, but the env runs "
                    f"{self.task.name!r}: expected tiers='simulated:{self.task.name}' (or a "
                    f"'{self.task.name}-...' preset)"
                )
        self.generation_cache: GenerationCache | None = None
        if generation_cache is not None:
            if all(t.simulated for t in self.tiers):
                raise ConfigError(
                    "generation_cache caches real tiers' greedy calls; expected at least one "
                    f"non-simulated tier, got the simulated tiers {[t.name for t in self.tiers]}"
                )
            self.generation_cache = GenerationCache(generation_cache)
            self.tiers = [
                t
                if t.simulated
                else PrecisionTier(t.name, CachedBackend(t.backend, self.generation_cache))
                for t in self.tiers
            ]
        self.encoder = encoder if isinstance(encoder, SentenceEncoder) else SentenceEncoder(encoder)
        self.split = split
        self.max_steps = max_steps
        self.max_history = max_history
        self.cost_weight = float(cost_weight)
        self.reward_mode = reward_mode
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.step_timeout_s = step_timeout_s
        self.render_mode = render_mode

        self._dim = self.encoder.dim
        self.observation_layout = layout.name
        self._layout = layout
        self.action_space = spaces.Discrete(len(self.tiers))
        self.observation_space = layout.space(max_history, self._dim)
        self.simulated = all(t.simulated for t in self.tiers)
        self._episode: Episode | None = None
        self._failed_reset: str | None = None
        self._tasks = LocalTaskSlots([self.task])
        self._stepper = AgentStepper(
            prompter=self.prompter,
            tiers=self.tiers,
            latency=self.latency,
            encoder=self.encoder,
            max_steps=max_steps,
            max_history=max_history,
            retry=RetryPolicy(max_retries, retry_backoff_s, step_timeout_s),
            cache=self.generation_cache,
        )

    # -- public helpers -----------------------------------------------------------
    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def embedding_dim(self) -> int:
        return self._dim

    def step_context(self) -> StepContext:
        """The structured state handed to backends for the pending step."""
        ep = self._require_episode()
        return step_context(self._tasks, 0, ep, _Expert(self._tasks, 0))

    def agent_state(self) -> AgentState:
        return agent_state(self._require_episode())

    def action_masks(self) -> np.ndarray:
        """Valid tiers (all of them, always): what sb3-contrib's ``MaskablePPO`` reads, so it
        needs no ``ActionMasker`` wrapper."""
        return np.ones(len(self.tiers), dtype=bool)

    def proposals(self) -> dict[str, Any]:
        """Each tier's proposed action on the pending state without stepping, plus the
        expert's command. Needs simulated (deterministic, side-effect-free) tiers: this is
        what the simulated oracle router reads."""
        if not self.simulated:
            raise ConfigError(
                "proposals() needs simulated tiers (real backends are not side-effect free); "
                f"tiers are {self.tier_names}"
            )
        return self._stepper.propose(self._tasks, 0, self._require_episode())

    # -- Gymnasium API ------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        split, index, charge_router = parse_reset_options(options, self.split)
        index, episode_seed = draw_task(self.np_random, self.task.num_tasks(split), index, split)
        # a failed task reset (a corrupt game file) leaves no half-loaded episode: step()
        # then refuses with a clear error until a reset() succeeds
        self._episode = None
        try:
            [(ep, forced)] = self._stepper.start(
                self._tasks, [(0, split, index, episode_seed, charge_router)]
            )
        except Exception as exc:
            self._failed_reset = f"{type(exc).__name__}: {exc}"
            raise
        self._failed_reset = None
        self._episode = ep
        return self._obs(), self._info(step=None, forced=forced)

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        ep = self._require_episode()
        if ep.done:
            raise PrecisionGymError(
                "step() called on a finished episode: expected reset() after terminated or "
                "truncated was returned"
            )
        tier = self._check_action(action)
        before = ep.time_s
        [(step_info, forced)] = self._stepper.transition(self._tasks, [(0, ep, tier)])
        terminated = ep.stopped
        truncated = bool(not terminated and ep.done)
        reward = step_reward(ep, before, self.cost_weight, self.reward_mode)
        info = self._info(step=step_info, forced=forced)
        if self.render_mode == "ansi":
            info["render"] = self.render()
        elif self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        """The episode transcript: text (``ansi``), printed (``human``: the new lines, at
        every step) or drawn as an ``[H, W, 3]`` uint8 image (``rgb_array``); None without a
        mode."""
        if self.render_mode == "rgb_array" and self._episode is None:
            from precision_gym.envs.render import text_to_rgb

            return text_to_rgb("")
        if self.render_mode is None or self._episode is None:
            return None
        ep = self._episode
        lines = [f"[{ep.task_id}] {ep.description}"]
        for a, o, k in zip(ep.actions, ep.observations, ep.tiers, strict=False):
            lines.append(f"  ({self.tiers[k].name}) > {a}\n    {o}")
        if self.render_mode == "human":  # what is new since the last print
            new = lines[ep.human_lines :]
            if new:
                print("\n".join(new), flush=True)
            ep.human_lines = len(lines)
            return None
        text = "\n".join(lines)
        if self.render_mode == "rgb_array":
            from precision_gym.envs.render import text_to_rgb

            return text_to_rgb(text)
        return text

    def close(self) -> None:
        self.task.close()
        for tier in self.tiers:
            tier.backend.close()

    # -- internals ----------------------------------------------------------------
    def _require_episode(self) -> Episode:
        if self._episode is None:
            failed = getattr(self, "_failed_reset", None)
            raise PrecisionGymError(
                "no episode in progress: call reset() before step()"
                + (f" (the last reset() failed: {failed})" if failed else "")
            )
        return self._episode

    def _check_action(self, action: Any) -> int:
        try:
            arr = np.asarray(action)
            ok = arr.shape in ((), (1,)) and np.issubdtype(arr.dtype, np.integer)
            value = int(arr.reshape(-1)[0]) if ok else None
        except (TypeError, ValueError):
            ok, value = False, None
        if not ok or value is None or not self.action_space.contains(np.int64(value)):
            raise InvalidActionError(
                f"action must be an integer tier index in [0, {len(self.tiers)}) "
                f"({', '.join(f'{i}={n}' for i, n in enumerate(self.tier_names))}), "
                f"got {action!r}"
            )
        return value

    def _obs(self) -> dict[str, np.ndarray]:
        return self._stepper.observation(self._require_episode(), self._layout)

    def _info(self, step: dict[str, Any] | None, forced: list[dict[str, Any]]) -> dict[str, Any]:
        return self._stepper.info(self._require_episode(), step, forced, self.simulated)


def parse_reset_options(
    options: dict[str, Any] | None, default_split: str
) -> tuple[str, int | None, bool]:
    """``(split, task_index or None, charge_router)`` from ``reset(options=...)``."""
    options = dict(options or {})
    unknown = set(options) - {"split", "task_index", "charge_router"}
    if unknown:
        raise ConfigError(
            f"unknown reset options {sorted(unknown)}: expected split, task_index, charge_router"
        )
    split = options.get("split", default_split)
    if not isinstance(split, str):
        raise ConfigError(f"reset option split must be a split name (str), got {split!r}")
    charge_router = _bool_arg("reset option charge_router", options.get("charge_router", True))
    index = options.get("task_index")
    if index is not None:
        index = _int_arg("reset option task_index", index, 0)
    return split, index, charge_router


def step_reward(ep: Episode, time_before: float, cost_weight: float, reward_mode: str) -> float:
    """Eq. 8 paid at the end (``"sparse"``) or as ``-lambda * t_step`` + success (``"dense"``)."""
    success = 1.0 if ep.won else 0.0
    if reward_mode == "dense":
        return -cost_weight * (ep.time_s - time_before) + (success if ep.done else 0.0)
    return trajectory_return(success, ep.time_s, cost_weight) if ep.done else 0.0


#: deprecated names, served with a DeprecationWarning for one release
__getattr__ = module_aliases(__name__, {"make_agent": "make_prompter"}, globals())
