"""``BatchedAgentVectorEnv``: N episodes of ``MixedPrecisionAgentEnv`` stepped together.

``gym.make_vec("DMR-ALFWorld-v0", num_envs=N, vectorization_mode="vector_entry_point",
workers=W, **env_kwargs)`` returns it (``DMR-WebShop-v0`` too). One ``step(actions)`` runs the
single agent step (:class:`~precision_gym.envs.agent_step.AgentStepper`) for all N episodes:

* the N prompts are grouped by chosen tier and each tier's ``generate`` is called **once**
  with its whole batch (the HTTP backend keeps them all in flight, the transformers backend
  runs one padded batch, the simulated tiers answer the batch in one call);
* every new step text is embedded in **one** encoder call (through the shared cache);
* the N task engines step in ``workers`` processes (``workers=0``: in this process).

Same seeds give exactly the trajectories of N single envs (``reset(seed=s)`` seeds slot
``i`` with ``s + i``, as Gymnasium's ``SyncVectorEnv`` does), whatever ``workers`` is.
Autoreset is Gymnasium's ``NEXT_STEP`` mode (the default of its own vector envs): the step
after an episode ends resets that slot and ignores its action.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from precision_gym.envs.agent_step import Episode, LocalTaskSlots, TaskSlots, draw_task
from precision_gym.envs.mixed_precision import (
    MixedPrecisionAgentEnv,
    parse_reset_options,
    step_reward,
)
from precision_gym.error import ConfigError, InvalidActionError, PrecisionGymError

try:  # Gymnasium >= 1.1 (1.2.2 is what ray[rllib] pins)
    from gymnasium.vector import AutoresetMode

    NEXT_STEP: Any = AutoresetMode.NEXT_STEP
except ImportError:  # pragma: no cover - Gymnasium 1.0 has one mode and no enum
    NEXT_STEP = "NextStep"

__all__ = ["BatchedAgentVectorEnv"]


class BatchedAgentVectorEnv(VectorEnv):
    """A Gymnasium ``VectorEnv`` of ``num_envs`` precision-routing episodes.

    Args:
        num_envs: episodes stepped together (N).
        workers: processes that run the task engines (0: all in this process; else
            ``1 <= workers <= num_envs``; slot ``i`` runs on worker ``i % workers``).
        ray_address: run the ``workers`` task engines as Ray actors on this cluster
            (``"auto"``, ``"ray://host:10001"``, or ``"local"`` to start one here; the ``ray``
            extra) instead of local processes: the same trajectories.
        park_finished: instead of autoresetting, keep a finished slot *parked* until the next
            ``reset()``: ``step`` returns its final observation again with reward 0,
            ``terminated=True`` and ``info["parked"]``, and does no work for it (a GRPO group
            needs each member's one episode).
        **env_kwargs: the arguments of :class:`MixedPrecisionAgentEnv`, which behave as in
            ``gym.make`` (one set of tiers, one encoder and one prompter serve all slots).

    ``reset(options=...)`` takes the single env's options; ``task_index`` may also be a
    sequence with one index per slot.
    """

    metadata: dict[str, Any] = {"autoreset_mode": NEXT_STEP, "render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        num_envs: int = 1,
        workers: int = 0,
        park_finished: bool = False,
        ray_address: str | None = None,
        **env_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"workers must be an integer >= 0, got {workers!r}")
        if ray_address is not None and workers < 1:
            raise ConfigError(
                f"ray_address={ray_address!r} runs the task engines on Ray actors: expected "
                f"workers >= 1 (the number of actors), got {workers}"
            )
        if workers > num_envs:
            raise ConfigError(
                f"workers must be <= num_envs ({num_envs}): each worker owns at least one "
                f"episode, got workers={workers}"
            )
        env_kwargs.pop("max_episode_steps", None)  # make_vec adds it from the spec
        if env_kwargs.get("render_mode") is not None:
            raise ConfigError(
                "the batched vector env does not render; got render_mode="
                f"{env_kwargs['render_mode']!r} (use gym.make for a rendered single env)"
            )
        #: the single env the slots share tiers, prompter, encoder and settings with
        self.template = MixedPrecisionAgentEnv(**env_kwargs)
        self.num_envs = num_envs
        self.workers = workers
        self.single_observation_space = self.template.observation_space
        self.single_action_space = self.template.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._stepper = self.template._stepper
        self.tasks: TaskSlots
        if workers == 0:
            self.tasks = LocalTaskSlots(
                [copy.deepcopy(self.template.task) for _ in range(num_envs)]
            )
        elif ray_address is not None:
            from precision_gym.envs.task_workers import RayTaskSlots

            self.tasks = RayTaskSlots(self.template.task, num_envs, workers, ray_address)
        else:
            from precision_gym.envs.task_workers import WorkerTaskSlots

            self.tasks = WorkerTaskSlots(self.template.task, num_envs, workers)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._episodes: list[Episode | None] = [None] * num_envs
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self.park_finished = bool(park_finished)
        self._final: list[tuple[dict[str, np.ndarray], dict[str, Any]] | None] = [None] * num_envs
        self.closed = False

    # -- views ------------------------------------------------------------------------
    @property
    def tiers(self) -> list[Any]:
        return self.template.tiers

    @property
    def encoder(self) -> Any:
        return self.template.encoder

    @property
    def episodes(self) -> list[Episode | None]:
        """The typed episode record of every slot."""
        return list(self._episodes)

    # -- Gymnasium API ------------------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        n = self.num_envs
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ConfigError(f"expected {n} seeds (one per env), got {len(seeds)}")
        options = dict(options or {})
        indices = options.get("task_index")
        if isinstance(indices, (list, tuple, np.ndarray)):
            if len(indices) != n:
                raise ConfigError(
                    f"task_index as a sequence needs one index per env ({n}), got {len(indices)}"
                )
            per_slot = [dict(options, task_index=int(i)) for i in indices]
        else:
            per_slot = [options] * n
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(s)
        self._autoreset[:] = False
        infos: dict[str, Any] = {}
        results = self._start(list(range(n)), per_slot)
        obs = []
        for i, (ep, forced) in enumerate(results):
            obs.append(self._stepper.observation(ep, self.template._layout))
            self._add_info(infos, self._stepper.info(ep, None, forced, self.template.simulated), i)
        return self._stack(obs), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if any(ep is None for ep in self._episodes):
            raise PrecisionGymError("no episodes in progress: call reset() before step()")
        arr = np.asarray(actions)
        if arr.shape != (self.num_envs,):
            raise InvalidActionError(
                f"expected one tier index per env, shape ({self.num_envs},), got shape "
                f"{arr.shape}: {actions!r}"
            )
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terms = np.zeros(n, dtype=bool)
        truncs = np.zeros(n, dtype=bool)
        infos: dict[str, Any] = {}
        obs: list[dict[str, np.ndarray] | None] = [None] * n
        to_reset = [i for i in range(n) if self._autoreset[i]]
        to_step = [i for i in range(n) if not self._autoreset[i]]
        if self.park_finished:  # parked slots: the final observation again, no work
            for i in to_reset:
                final_obs, final_info = self._final[i]  # type: ignore[misc]
                obs[i], terms[i] = final_obs, True
                self._add_info(infos, {**final_info, "parked": True}, i)
            to_reset = []
        tiers = {i: self.template._check_action(arr[i]) for i in to_step}
        layout, simulated = self.template._layout, self.template.simulated
        if to_step:
            eps = [self._episodes[i] for i in to_step]
            before = [ep.time_s for ep in eps]  # type: ignore[union-attr]
            results = self._stepper.transition(
                self.tasks, [(i, ep, tiers[i]) for i, ep in zip(to_step, eps, strict=True)]
            )
            for i, ep, t0, (step_info, forced) in zip(to_step, eps, before, results, strict=True):
                assert ep is not None
                terms[i] = ep.stopped
                truncs[i] = not terms[i] and ep.done
                rewards[i] = step_reward(
                    ep, t0, self.template.cost_weight, self.template.reward_mode
                )
                obs[i] = self._stepper.observation(ep, layout)
                info = self._stepper.info(ep, step_info, forced, simulated)
                self._add_info(infos, info, i)
                if ep.done:
                    self._final[i] = (obs[i], info)
        if to_reset:
            for i, (ep, forced) in zip(
                to_reset, self._start(to_reset, [{}] * len(to_reset)), strict=True
            ):
                obs[i] = self._stepper.observation(ep, layout)
                self._add_info(infos, self._stepper.info(ep, None, forced, simulated), i)
        self._autoreset = terms | truncs  # parked slots stay terminated
        return self._stack(obs), rewards, terms, truncs, infos  # type: ignore[arg-type]

    def close_extras(self, **kwargs: Any) -> None:
        close = getattr(self.tasks, "close", None)
        if close is not None:
            close()
        self.template.close()

    # -- internals ---------------------------------------------------------------------
    def _start(
        self, slots: list[int], options: list[dict[str, Any]]
    ) -> list[tuple[Episode, list[dict[str, Any]]]]:
        items = []
        for i, opts in zip(slots, options, strict=True):
            split, index, charge = parse_reset_options(opts, self.template.split)
            rng = self._rngs[i]
            if rng is None:
                rng, _ = seeding.np_random(None)
                self._rngs[i] = rng
            n_tasks = self.template.task.num_tasks(split)
            index, episode_seed = draw_task(rng, n_tasks, index, split)
            items.append((i, split, index, episode_seed, charge))
        results = self._stepper.start(self.tasks, items)
        for i, (ep, _) in zip(slots, results, strict=True):
            self._episodes[i] = ep
        return results

    def _stack(self, obs: list[Any]) -> Any:
        if isinstance(obs[0], dict):
            return {key: np.stack([o[key] for o in obs]) for key in obs[0]}
        return np.stack(obs)

    def __repr__(self) -> str:
        return (
            f"BatchedAgentVectorEnv(num_envs={self.num_envs}, workers={self.workers}, "
            f"task={self.template.task.name!r}, tiers={self.template.tier_names})"
        )
