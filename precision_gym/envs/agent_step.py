"""The agent step, written once: prompt -> generate (one retry layer) -> parse -> task step -> cost.

Every executed agent step of :class:`~precision_gym.envs.MixedPrecisionAgentEnv` and of the
batched vector env (:mod:`precision_gym.envs.vector`) goes through :class:`AgentStepper`.
The step is split in phases so that a batch of episodes shares them:

1. **prepare**: for each episode, the :class:`StepContext` and the agent's prompt;
2. **generate**: the requests are grouped by chosen tier and each tier's backend is called
   **once** with its whole batch (:func:`generate_batch`, the retry policy);
3. **parse + task step**: the agent parses each output; valid commands are executed by the
   task engines in one batched call of a :class:`TaskSlots` (in-process tasks, or tasks
   owned by worker processes);
4. **cost + encode**: Eq. 9's step time (:func:`precision_gym.cost.step_time_s`) and one
   encoder call for every new step text.

Retries live in exactly one layer per call: a backend that retries transient faults itself
(``retries_faults = True``, e.g. :class:`~precision_gym.backends.openai_backend.OpenAIBackend`,
per request) is called once; any other backend is retried here (``RetryPolicy.max_retries``
with exponential backoff). Either way, all attempts of one agent step share one deadline
(``RetryPolicy.step_timeout_s``), handed to backends in ``GenerationRequest.deadline``. A
fault that outlives the policy becomes a :class:`GenerationFailure` and ends the episode as
failed (``info["backend_error"]``); it never raises out of a step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from precision_gym.backends.base import Generation, GenerationRequest, StepContext
from precision_gym.cost import LatencyCoefficients, step_time_s
from precision_gym.deprecation import renamed_attribute
from precision_gym.embedding import SentenceEncoder
from precision_gym.error import BackendError, ConfigError
from precision_gym.prompting.base import AgentState, TextPrompter
from precision_gym.tasks.base import TaskObservation, TextTask
from precision_gym.tiers import PrecisionTier

__all__ = [
    "NOTHING_HAPPENS",
    "THINK_REPLY",
    "AgentStepper",
    "Episode",
    "GenerationFailure",
    "LocalTaskSlots",
    "RetryPolicy",
    "TaskSlots",
    "TaskStart",
    "generate_batch",
]

THINK_REPLY = "OK."
NOTHING_HAPPENS = "Nothing happens."


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RetryPolicy:
    """How an agent step handles backend faults.

    Attributes:
        max_retries: retries after the first attempt, for backends that do not retry
            themselves (``retries_faults`` false); a backend that does is called once.
        backoff_s: first backoff; doubled after every retry.
        step_timeout_s: deadline for all attempts of one agent step (None: no deadline).
            Backends that honour ``GenerationRequest.deadline`` (the HTTP backend) cut their
            own timeouts and retries to it; no retry starts after it.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    step_timeout_s: float | None = 180.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ConfigError(
                f"max_retries and retry_backoff_s must be >= 0, got {self.max_retries}, "
                f"{self.backoff_s}"
            )
        if self.step_timeout_s is not None and not self.step_timeout_s > 0:
            raise ConfigError(f"step_timeout_s must be > 0 or None, got {self.step_timeout_s}")


@dataclass(frozen=True)
class GenerationFailure:
    """A generation that failed for good: what was tried and what came back."""

    tier: int
    tier_name: str
    attempts: int
    error_type: str
    message: str
    elapsed_s: float
    retryable: bool

    def __str__(self) -> str:
        return (
            f"{self.tier_name} failed after {self.attempts} attempt(s): "
            f"{self.error_type}: {self.message}"
        )


@dataclass
class TaskStart:
    """What a task reset gives the env: the first observation and the game's metadata."""

    observation: TaskObservation
    task_id: str
    task_type: str
    description: str


@dataclass
class Episode:
    """The typed state of one episode (one per env, one per slot of a vector env)."""

    split: str
    task_index: int
    task_id: str
    task_type: str
    description: str
    episode_seed: int
    charge_router: bool
    initial_observation: str
    last: TaskObservation
    won: bool
    score: float
    #: executed commands, their observations and the expert's command where computed
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    experts: list[str | None] = field(default_factory=list)
    #: per executed agent step (failed ones included): tier, tokens, router charged
    tiers: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    charge_router_per_step: list[bool] = field(default_factory=list)
    steps: int = 0
    decisions: int = 0
    high_decisions: int = 0
    llm_calls: int = 0
    high_calls: int = 0
    #: modeled episode time T of Eq. 9 (seconds)
    time_s: float = 0.0
    done: bool = False
    #: the last ``max_history`` step embeddings
    vectors: list[np.ndarray] = field(default_factory=list)
    failure: GenerationFailure | None = None
    #: transcript lines already printed by ``render_mode="human"``
    human_lines: int = 0
    #: deprecated name of ``charge_router_per_step``
    router_calls = renamed_attribute("router_calls", "charge_router_per_step")

    @property
    def backend_error(self) -> str | None:
        return None if self.failure is None else str(self.failure)

    @property
    def stopped(self) -> bool:
        """No further agent step can run: won, engine done, or a backend failure."""
        return bool(self.won or self.last.done or self.failure is not None)

    def __getitem__(self, key: str) -> Any:  # dict-style reads of the former untyped record
        return getattr(self, key)

    @staticmethod
    def first_text(start: TaskStart) -> str:
        """The first step text: task description + initial observation."""
        text = start.observation.text
        return text if start.description in text else f"{start.description}\n{text}"


# ----------------------------------------------------------------------------- task side


class TaskSlots(Protocol):
    """The task side of a batch of episodes: slot ``i`` owns one task instance."""

    #: the task family's name (``"alfworld"``, ``"webshop"``)
    task_name: str

    def reset(self, items: Sequence[tuple[int, str, int]]) -> list[TaskStart]:
        """Reset slot ``i`` to game ``index`` of ``split`` for each ``(i, split, index)``."""
        ...

    def step(self, items: Sequence[tuple[int, str]]) -> list[TaskObservation]:
        """Execute ``command`` in slot ``i`` for each ``(i, command)``."""
        ...

    def expert_commands(self, slots: Sequence[int]) -> list[str | None]: ...

    def forced_pending(self, slots: Sequence[int]) -> list[bool]:
        """Whether each slot's pending step goes to the highest tier by the task's protocol."""
        ...

    def step_kind(self, slot: int, command: str) -> str: ...


class LocalTaskSlots:
    """Task instances in this process (the single env: one slot; a task worker: its share).

    A worker process also keeps each slot's expert command once computed
    (:meth:`prefetch_experts`, run while the driver encodes) until the slot's next step or
    reset, and answers :meth:`step_flags` / :meth:`reset_flags`: the observations with each
    slot's forced-high flag, so the driver needs no second round trip for it."""

    #: the tasks run in this process (nothing to overlap with)
    remote = False
    #: threads for the driver's encoder call (the tasks run here: no waiting cores to use)
    encode_threads = 1

    def __init__(self, tasks: Sequence[TextTask]) -> None:
        self.tasks = list(tasks)
        self.task_name = self.tasks[0].name
        for task in self.tasks:  # engines imported and built here, before any episode
            task.warm_up()
        self._experts: dict[int, tuple[bool, Any]] = {}  # slot -> (ok, command or error)

    def reset(self, items: Sequence[tuple[int, str, int]]) -> list[TaskStart]:
        for i, _, _ in items:
            self._experts.pop(i, None)
        return [task_start(self.tasks[i], split, index) for i, split, index in items]

    def step(self, items: Sequence[tuple[int, str]]) -> list[TaskObservation]:
        for i, _ in items:
            self._experts.pop(i, None)
        return [self.tasks[i].step(cmd) for i, cmd in items]

    def expert_commands(self, slots: Sequence[int]) -> list[str | None]:
        return [self._expert(i) for i in slots]

    def _expert(self, i: int) -> str | None:
        known = self._experts.get(i)
        if known is None:
            return self.tasks[i].expert_command()
        if not known[0]:
            raise known[1]
        return known[1]

    def prefetch_experts(self, slots: Sequence[int]) -> None:
        """Compute and keep each slot's expert command (an error is kept and raised when the
        command is asked for): the same answer :meth:`expert_commands` would give later."""
        for i in slots:
            if i in self._experts:
                continue
            try:
                self._experts[i] = (True, self.tasks[i].expert_command())
            except Exception as exc:  # raised where the command is asked for
                self._experts[i] = (False, exc)

    def forced_pending(self, slots: Sequence[int]) -> list[bool]:
        return [self.tasks[i].forced_high(self.tasks[i].pending_step_kind()) for i in slots]

    def _flags(self, slots: Sequence[int]) -> list[bool | None]:
        """Each slot's forced-high flag, ``None`` where computing it failed (then the driver
        asks :meth:`forced_pending` itself and gets the error where it belongs)."""
        out: list[bool | None] = []
        for i in slots:
            try:
                out.append(self.forced_pending([i])[0])
            except Exception:
                out.append(None)
        return out

    def reset_flags(self, items: Sequence[tuple[int, str, int]]) -> list[tuple[Any, Any]]:
        starts = self.reset(items)
        return list(zip(starts, self._flags([i for i, _, _ in items]), strict=True))

    def step_flags(self, items: Sequence[tuple[int, str]]) -> list[tuple[Any, Any]]:
        observations = self.step(items)
        return list(zip(observations, self._flags([i for i, _ in items]), strict=True))

    def step_kind(self, slot: int, command: str) -> str:
        return self.tasks[slot].step_kind(command)

    def close(self) -> None:
        for task in self.tasks:
            task.close()


def task_start(task: TextTask, split: str, index: int) -> TaskStart:
    first = task.reset(split, index)
    return TaskStart(first, task.task_id, task.task_type, task.description)


class _Expert:
    """``StepContext.expert_command`` of one step: computed at most once, on demand (or
    prefetched for backends that declare ``needs_expert``); remembers whether it was asked."""

    def __init__(self, tasks: TaskSlots, slot: int) -> None:
        self._tasks, self._slot = tasks, slot
        self._known = False
        self._value: str | None = None
        self.asked = False

    def prefetch(self, value: str | None) -> None:
        self._known, self._value = True, value

    def __call__(self) -> str | None:
        if not self._known:
            self.prefetch(self._tasks.expert_commands([self._slot])[0])
        self.asked = True
        return self._value


def _simulated_pair(backend: Any) -> Any:
    """The SIMULATED state model behind a tier's backend (through wrappers such as the
    generation cache), or None for any other backend."""
    for _ in range(8):
        pair = getattr(backend, "pair", None)
        if pair is not None and hasattr(pair, "critical_share"):
            return pair
        backend = getattr(backend, "backend", None)
        if backend is None:
            return None
    return None


def step_context(tasks: TaskSlots, slot: int, ep: Episode, expert: Any) -> StepContext:
    return StepContext(
        task_name=tasks.task_name,
        task_id=ep.task_id,
        task_type=ep.task_type,
        step=ep.steps,
        actions=tuple(ep.actions),
        observations=tuple(ep.observations),
        admissible_commands=tuple(ep.last.admissible_commands),
        expert_command=expert,
        step_kind=lambda command: tasks.step_kind(slot, command),
        episode_seed=ep.episode_seed,
        past_experts=tuple(ep.experts),
    )


def agent_state(ep: Episode) -> AgentState:
    return AgentState(
        task_description=ep.description,
        initial_observation=ep.initial_observation,
        actions=list(ep.actions),
        observations=list(ep.observations),
        admissible_commands=list(ep.last.admissible_commands),
        step=ep.steps,
    )


# ----------------------------------------------------------------------------- generation


def generate_batch(
    tier: int,
    tier_obj: PrecisionTier,
    requests: Sequence[GenerationRequest],
    policy: RetryPolicy,
) -> list[Generation] | GenerationFailure:
    """One tier's batch in one ``generate`` call, under the retry policy (the one layer).

    Returns the generations in order, or the :class:`GenerationFailure` of the batch.
    """
    backend = tier_obj.backend
    t0 = time.monotonic()
    deadline = None if policy.step_timeout_s is None else t0 + policy.step_timeout_s
    if deadline is not None:
        requests = [replace(r, deadline=deadline) for r in requests]
    own_retries = bool(getattr(backend, "retries_faults", False))
    max_attempts = 1 if own_retries else policy.max_retries + 1
    delay = policy.backoff_s
    attempt = 0
    while True:
        attempt += 1
        try:
            gens = backend.generate(requests)
            if len(gens) != len(requests):
                raise BackendError(
                    f"expected {len(requests)} generation(s), got {len(gens)}", retryable=False
                )
            return list(gens)
        except BackendError as exc:
            error = exc
        late = deadline is not None and time.monotonic() + delay >= deadline
        if not error.retryable or attempt >= max_attempts or late:
            break
        time.sleep(delay)
        delay *= 2
    attempts = attempt if not own_retries else max(1, int(getattr(error, "attempts", 1) or 1))
    return GenerationFailure(
        tier=tier,
        tier_name=tier_obj.name,
        attempts=attempts,
        error_type=type(error).__name__,
        message=str(error),
        elapsed_s=time.monotonic() - t0,
        retryable=error.retryable,
    )


# ----------------------------------------------------------------------------- the stepper


@dataclass
class _Pending:
    slot: int
    ep: Episode
    tier: int
    charge_router: bool
    ctx: StepContext | None = None
    expert: _Expert | None = None
    request: GenerationRequest | None = None
    result: Generation | GenerationFailure | None = None


@dataclass
class AgentStepper:
    """Runs agent steps for one or many episodes (see the module docstring)."""

    prompter: TextPrompter
    tiers: list[PrecisionTier]
    latency: LatencyCoefficients
    #: embeds the step texts; None: no embeddings (callers that only play, e.g. benchmarks)
    encoder: SentenceEncoder | None
    max_steps: int
    max_history: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: the generation cache of the real tiers, when enabled (its counters go to ``info``)
    cache: Any = None

    # -- episodes -------------------------------------------------------------------
    def start(
        self,
        tasks: TaskSlots,
        items: Sequence[tuple[int, str, int, int, bool]],
    ) -> list[tuple[Episode, list[dict[str, Any]]]]:
        """Reset slots ``(slot, split, task_index, episode_seed, charge_router)``: one task
        reset per slot, one encoder call for all first texts, then any forced steps."""
        starts = tasks.reset([(slot, split, index) for slot, split, index, _, _ in items])
        episodes = []
        for (_, split, index, seed, charge), start in zip(items, starts, strict=True):
            first = start.observation
            episodes.append(
                Episode(
                    split=split,
                    task_index=int(index),
                    task_id=start.task_id,
                    task_type=start.task_type,
                    description=start.description,
                    episode_seed=int(seed),
                    charge_router=bool(charge),
                    initial_observation=first.text,
                    last=first,
                    won=bool(first.won),
                    score=float(first.score),
                )
            )
        self.prefetch_experts(tasks, [(it[0], ep) for it, ep in zip(items, episodes, strict=True)])
        if self.encoder is not None:
            vectors = self._encode(tasks, [Episode.first_text(s) for s in starts])
            for ep, vec in zip(episodes, vectors, strict=True):
                ep.vectors.append(vec)
        forced = self.forced_steps(
            tasks, [(slot, ep) for (slot, *_), ep in zip(items, episodes, strict=True)]
        )
        return list(zip(episodes, forced, strict=True))

    def prefetch_experts(self, tasks: TaskSlots, pairs: Sequence[tuple[int, Episode]]) -> None:
        """Let task workers compute the next expert command of each episode that goes on
        while this process encodes (only where a tier reads it and the slots run in other
        processes: ``tasks.remote``). The same commands are computed either way."""
        if not getattr(tasks, "remote", False) or not any(
            getattr(t.backend, "needs_expert", False) for t in self.tiers
        ):
            return
        slots = [slot for slot, ep in pairs if not ep.stopped and ep.steps < self.max_steps]
        if slots:
            tasks.prefetch_experts(slots)  # type: ignore[attr-defined]

    def transition(
        self, tasks: TaskSlots, items: Sequence[tuple[int, Episode, int]]
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """One router decision per ``(slot, episode, tier)``: the agent step, then the steps
        the task's protocol forces to the highest tier."""
        infos = self.agent_steps(
            tasks, [(slot, ep, tier, ep.charge_router) for slot, ep, tier in items]
        )
        for (_, ep, tier), _info in zip(items, infos, strict=True):
            ep.decisions += 1
            ep.high_decisions += int(tier == 0)
        forced = self.forced_steps(tasks, [(slot, ep) for slot, ep, _ in items])
        for (_, ep, _), _info in zip(items, infos, strict=True):
            terminated = ep.stopped
            ep.done = terminated or ep.steps >= self.max_steps
        return list(zip(infos, forced, strict=True))

    def forced_steps(
        self, tasks: TaskSlots, items: Sequence[tuple[int, Episode]]
    ) -> list[list[dict[str, Any]]]:
        """Run, in rounds, the steps each episode's task forces to the highest tier."""
        out: list[list[dict[str, Any]]] = [[] for _ in items]
        active = list(range(len(items)))
        while active:
            active = [
                i for i in active if not items[i][1].stopped and items[i][1].steps < self.max_steps
            ]
            if not active:
                break
            flags = tasks.forced_pending([items[i][0] for i in active])
            active = [i for i, f in zip(active, flags, strict=True) if f]
            if not active:
                break
            infos = self.agent_steps(tasks, [(*items[i], 0, False) for i in active])
            for i, info in zip(active, infos, strict=True):
                out[i].append(info)
        return out

    # -- the agent step -------------------------------------------------------------
    def prepare(
        self, tasks: TaskSlots, slot: int, ep: Episode
    ) -> tuple[_Expert, GenerationRequest]:
        """The pending step's request: the agent's prompt and the :class:`StepContext`."""
        expert = _Expert(tasks, slot)
        ctx = step_context(tasks, slot, ep, expert)
        prompt = self.prompter.build_prompt(agent_state(ep))
        return expert, GenerationRequest(prompt, self.prompter.sampling, ctx)

    def propose(self, tasks: TaskSlots, slot: int, ep: Episode) -> dict[str, Any]:
        """Every tier's parsed action on the pending state, without stepping (side-effect-free
        tiers only: the simulated oracles read this), plus the expert's command.

        With SIMULATED tiers it also holds what their state model knows of the step: the
        expert command's ``kind``, each tier's ``critical_share`` (its chance that a state of
        this kind and task type is critical, not whether this one is) and ``derailed``
        (whether the history holds a wrong action on a critical state)."""
        expert, request = self.prepare(tasks, slot, ep)
        admissible = list(ep.last.admissible_commands)
        actions = []
        for tier in self.tiers:
            gen = tier.backend.generate([request])[0]
            actions.append(self.prompter.parse(gen.text, admissible)[0])
        out: dict[str, Any] = {"expert": expert(), "actions": actions}
        pair = _simulated_pair(self.tiers[0].backend)
        ctx = request.context
        if pair is not None and ctx is not None:
            kind = ctx.step_kind(out["expert"]) if out["expert"] is not None else None
            out["kind"] = kind
            out["critical_share"] = [
                pair.critical_share(t, ctx, kind) if kind is not None else 0.0
                for t in range(len(self.tiers))
            ]
            out["derailed"] = pair.derailed(ctx)
        return out

    def generate_groups(
        self, groups: Sequence[Sequence[_Pending]]
    ) -> list[list[Generation] | GenerationFailure]:
        """Each group (the pending steps of one tier) in one :func:`generate_batch` call.

        When every tier involved declares ``concurrent_calls`` (its work runs elsewhere, e.g.
        an HTTP server, and it may be called from several threads), the calls run at once in
        threads, so one tier's server is not left idle while another answers; otherwise one
        after another. The generations do not depend on which.
        """
        calls = [(g[0].tier, [p.request for p in g]) for g in groups]
        retry = self.retry
        assert retry is not None
        if len(calls) > 1 and all(
            getattr(self.tiers[t].backend, "concurrent_calls", False) for t, _ in calls
        ):
            with ThreadPoolExecutor(len(calls), thread_name_prefix="tier") as pool:
                futures = [
                    pool.submit(generate_batch, t, self.tiers[t], reqs, retry) for t, reqs in calls
                ]
                return [f.result() for f in futures]
        return [generate_batch(t, self.tiers[t], reqs, retry) for t, reqs in calls]

    def agent_steps(
        self, tasks: TaskSlots, items: Sequence[tuple[int, Episode, int, bool]]
    ) -> list[dict[str, Any]]:
        """One executed agent step per ``(slot, episode, tier, charge_router)``."""
        pending = [_Pending(slot, ep, tier, rc) for slot, ep, tier, rc in items]
        # 1. prepare: context + prompt; experts prefetched in one batch where a tier needs it
        for p in pending:
            p.expert, p.request = self.prepare(tasks, p.slot, p.ep)
            p.ctx = p.request.context
        wants = [p for p in pending if getattr(self.tiers[p.tier].backend, "needs_expert", False)]
        if wants:
            experts = tasks.expert_commands([p.slot for p in wants])
            for p, cmd in zip(wants, experts, strict=True):
                assert p.expert is not None
                p.expert.prefetch(cmd)
        # 2. generate: one call per tier with its whole batch (all tiers at once where the
        #    backends serve calls concurrently)
        groups = [[p for p in pending if p.tier == t] for t in sorted({p.tier for p in pending})]
        for group, result in zip(groups, self.generate_groups(groups), strict=True):
            for k, p in enumerate(group):
                p.result = result if isinstance(result, GenerationFailure) else result[k]
        # 3. parse; the valid commands go to the task engines in one batched call
        parsed: dict[int, tuple[str, bool, bool]] = {}
        to_step: list[tuple[int, str]] = []
        step_owner: list[int] = []
        for k, p in enumerate(pending):
            if isinstance(p.result, Generation):
                admissible = list(p.ctx.admissible_commands)  # type: ignore[union-attr]
                action, is_valid = self.prompter.parse(p.result.text, admissible)
                thinking = self.prompter.is_thinking(p.result.text)
                parsed[k] = (action, is_valid, thinking)
                if is_valid and not thinking:
                    to_step.append((p.slot, action))
                    step_owner.append(k)
        stepped = dict(zip(step_owner, tasks.step(to_step), strict=True)) if to_step else {}
        # 4. records and cost; one encoder call for every new step text
        infos: list[dict[str, Any]] = []
        texts: list[str] = []
        text_owner: list[Episode] = []
        for k, p in enumerate(pending):
            ep = p.ep
            ep.steps += 1
            ep.llm_calls += 1
            ep.high_calls += int(p.tier == 0)
            ep.tiers.append(p.tier)
            ep.charge_router_per_step.append(p.charge_router)
            if isinstance(p.result, GenerationFailure):  # the episode fails
                ep.failure = p.result
                ep.tokens.append(0)
                dt = step_time_s(0, p.tier, self.latency, p.charge_router)
                ep.time_s += dt
                infos.append(_step_info(p.tier, "", "", False, "", 0, dt, p.charge_router))
                continue
            gen = p.result
            assert gen is not None
            action, is_valid, thinking = parsed[k]
            if thinking:
                obs_text = THINK_REPLY
            elif is_valid:
                last = stepped[k]
                ep.last = last
                ep.won = bool(last.won)
                ep.score = float(last.score)
                obs_text = last.text
            else:
                obs_text = NOTHING_HAPPENS
            assert p.expert is not None
            ep.experts.append(p.expert() if p.expert.asked else None)
            ep.actions.append(action)
            ep.observations.append(obs_text)
            ep.tokens.append(gen.completion_tokens)
            dt = step_time_s(gen.completion_tokens, p.tier, self.latency, p.charge_router)
            ep.time_s += dt
            texts.append(f"> {action}\n{obs_text}")
            text_owner.append(ep)
            infos.append(
                _step_info(
                    p.tier,
                    action,
                    gen.text,
                    is_valid,
                    obs_text,
                    gen.completion_tokens,
                    dt,
                    p.charge_router,
                )
            )
        self.prefetch_experts(tasks, [(pending[k].slot, pending[k].ep) for k in stepped])
        if texts and self.encoder is not None:
            for ep, vec in zip(text_owner, self._encode(tasks, texts), strict=True):
                ep.vectors.append(vec)
                if len(ep.vectors) > self.max_history:
                    del ep.vectors[0]
        return infos

    def _encode(self, tasks: TaskSlots, texts: list[str]) -> np.ndarray:
        """One encoder call, on the cores of the task workers that wait for it."""
        assert self.encoder is not None
        threads = int(getattr(tasks, "encode_threads", 1))
        if threads > 1:
            return self.encoder.encode(texts, threads=threads)
        return self.encoder.encode(texts)

    # -- views ------------------------------------------------------------------------
    def observation(self, ep: Episode, layout: Any) -> Any:
        """The episode's step-embedding history in ``layout``
        (:mod:`precision_gym.envs.layouts`)."""
        if self.encoder is None:
            raise ConfigError("AgentStepper.observation needs an encoder, got encoder=None")
        n = len(ep.vectors)
        emb = np.zeros((self.max_history, self.encoder.dim), dtype=np.float32)
        emb[:n] = np.stack(ep.vectors)
        mask = np.zeros(self.max_history, dtype=np.float32)
        mask[:n] = 1.0
        np.clip(emb, -1.0, 1.0, out=emb)
        return layout.apply(emb, mask)

    def info(
        self,
        ep: Episode,
        step: dict[str, Any] | None,
        forced: list[dict[str, Any]],
        simulated: bool,
    ) -> dict[str, Any]:
        info: dict[str, Any] = {
            "task_id": ep.task_id,
            "task_type": ep.task_type,
            "task_index": ep.task_index,
            "split": ep.split,
            "step": ep.steps,
            "won": ep.won,
            "score": ep.score,
            "episode_time_s": ep.time_s,
            "hp_fraction": ep.high_decisions / ep.decisions if ep.decisions else 0.0,
            "hp_call_fraction": ep.high_calls / ep.llm_calls if ep.llm_calls else 0.0,
            "decisions": ep.decisions,
            "backend_error": ep.backend_error,
            "simulated": simulated,
            "forced_steps": forced,
        }
        if step is not None:
            info.update(step)
            info["tier_name"] = self.tiers[step["tier"]].name
        if ep.done:
            info["success"] = ep.won
        if self.cache is not None:
            info["generation_cache"] = self.cache.stats()
        return info


def _step_info(
    tier: int,
    action: str,
    raw: str,
    is_valid: bool,
    obs: str,
    tokens: int,
    dt: float,
    charge_router: bool,
) -> dict[str, Any]:
    return {
        "tier": tier,
        "action": action,
        "raw_output": raw,
        "is_valid": is_valid,
        "observation": obs,
        "completion_tokens": tokens,
        "step_latency_s": dt,
        "charge_router": charge_router,
        "router_call": charge_router,  # deprecated name of "charge_router"
    }


def draw_task(
    np_random: np.random.Generator, n_tasks: int, index: int | None, split: str
) -> tuple[int, int]:
    """The task index (drawn from ``np_random`` unless given) and the episode seed."""
    if index is None:
        index = int(np_random.integers(n_tasks))
    elif not 0 <= int(index) < n_tasks:
        raise ConfigError(f"task_index must be in [0, {n_tasks}) for split {split!r}, got {index}")
    return int(index), int(np_random.integers(2**31 - 1))
