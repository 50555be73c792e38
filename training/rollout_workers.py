"""Evaluation episodes spread over rollout workers: local processes or Ray actors.

The driver deals the ordered ``(seed, task_index)`` episodes to ``workers`` shares, all
episodes of a task to one worker (its game memo then serves every seed); each worker builds its own env and policy from a plain, picklable
:class:`RolloutSpec` (it imports the package itself, so ids are registered, and sets one
torch thread), plays its share with :func:`training.evaluation.rollout` and returns the
records; the driver puts them back in the original order. An episode's result depends only on
its reset seed (derived from seed and task) and the policy, so the records are identical
whatever the worker count: same seeds, same tasks, same order.

* ``workers`` local processes (``forkserver``) via :func:`training.pools.process_pool`;
* ``ray_address``: Ray actors (the optional ``ray`` extra, Ray core only) on an existing
  cluster (``"auto"``, ``"ray://host:10001"``) or ``"local"`` to start one on this machine
  and end it afterwards. When the caller already ran ``ray.init``, that instance is used.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from precision_gym.distributed import ray_session
from precision_gym.error import ConfigError
from training.cli.common import make_env
from training.evaluation import EpisodeRecord, rollout
from training.policies import load_policy
from training.pools import process_pool

__all__ = ["RolloutSpec", "ray_session", "run_distributed", "run_share", "shares"]


@dataclass(frozen=True)
class RolloutSpec:
    """What a worker needs to rebuild the env and the policy (plain data, picklable)."""

    env_id: str
    split: str
    router: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    p_high: float | None = None
    budget: float | None = None
    policy_seed: int = 0
    online_step: float | None = None
    deterministic: bool = True
    #: SB3 archives are unpickled: only with the user's --trust-checkpoint
    trust_checkpoint: bool = False


def shares(jobs: Sequence[tuple[int, int]], workers: int) -> list[list[int]]:
    """Indices of ``jobs`` (``(seed, task_index)``) for at most ``workers`` workers.

    Every episode of one task goes to the same worker (its game translation and planner memo
    then serve all seeds, as in one process); tasks are dealt round-robin in sorted order.
    Each share keeps the jobs' original order; the driver puts the records back in job order.
    """
    tasks = sorted({task for _, task in jobs})
    n = max(1, min(workers, len(tasks)))
    owner = {task: k % n for k, task in enumerate(tasks)}
    return [[j for j, (_, task) in enumerate(jobs) if owner[task] == w] for w in range(n)]


def _build(spec: RolloutSpec) -> tuple[Any, Any]:
    from precision_gym.threads import configure_torch_threads

    configure_torch_threads(explicit=False)
    env = make_env(spec.env_id, spec.env_kwargs)
    policy = load_policy(
        spec.router,
        env,
        spec.p_high,
        spec.budget,
        seed=spec.policy_seed,
        online_step=spec.online_step,
        trust_checkpoint=spec.trust_checkpoint,
    )
    return env, policy


def run_share(spec: RolloutSpec, jobs: Sequence[tuple[int, int]]) -> list[EpisodeRecord]:
    """Play ``jobs`` (``(seed, task_index)``) in order with a freshly built env and policy."""
    env, policy = _build(spec)
    try:
        return [rollout(env, policy, s, i, spec.split, spec.deterministic) for s, i in jobs]
    finally:
        env.close()


class RolloutActor:
    """A Ray actor: builds the env and policy once, then plays the shares it is sent."""

    def __init__(self, spec: RolloutSpec) -> None:
        self.spec = spec
        self.env, self.policy = _build(spec)

    def run(self, jobs: Sequence[tuple[int, int]]) -> list[EpisodeRecord]:
        s = self.spec
        return [rollout(self.env, self.policy, a, b, s.split, s.deterministic) for a, b in jobs]

    def close(self) -> None:
        self.env.close()


def _check(spec: RolloutSpec, workers: int, ray_address: str | None) -> None:
    if isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
    parallel = workers > 1 or ray_address is not None
    if parallel and spec.online_step is not None:
        raise ConfigError(
            "--online-step adapts its threshold across episodes in their order, so its "
            f"results depend on one stream: expected --workers 1 and no --ray-address, got "
            f"--workers {workers}" + (f" --ray-address {ray_address}" if ray_address else "")
        )
    if parallel and spec.router == "oracle":
        return  # the oracle reads its own env's proposals: each worker builds its own


def run_distributed(
    spec: RolloutSpec,
    jobs: Sequence[tuple[int, int]],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = False,
) -> list[EpisodeRecord]:
    """The records of ``jobs`` in order, played by ``workers`` local processes or Ray actors."""
    _check(spec, workers, ray_address)
    jobs = list(jobs)
    index_parts = shares(jobs, workers)
    parts = [[jobs[j] for j in part] for part in index_parts]
    if ray_address is not None:
        return _in_job_order(index_parts, _run_ray(spec, parts, ray_address))
    if len(parts) == 1:
        return run_share(spec, parts[0])
    with process_pool(len(parts)) as pool:
        futures = [pool.submit(run_share, spec, part) for part in parts]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc=f"eval {spec.router} x{len(parts)}", unit="ep")
            for fut in concurrent.futures.as_completed(futures):
                bar.update(len(parts[futures.index(fut)]))
            bar.close()
        return _in_job_order(index_parts, [fut.result() for fut in futures])


def _in_job_order(
    index_parts: list[list[int]], results: list[list[EpisodeRecord]]
) -> list[EpisodeRecord]:
    out: list[EpisodeRecord | None] = [None] * sum(len(p) for p in index_parts)
    for part, recs in zip(index_parts, results, strict=True):
        for j, rec in zip(part, recs, strict=True):
            out[j] = rec
    return out  # type: ignore[return-value]


def _run_ray(spec: RolloutSpec, parts: list[list[Any]], address: str) -> list[list[EpisodeRecord]]:
    with ray_session(address) as ray:
        actor_cls = ray.remote(num_cpus=1)(RolloutActor)
        actors = [actor_cls.remote(spec) for _ in parts]
        try:
            return ray.get([a.run.remote(part) for a, part in zip(actors, parts, strict=True)])
        finally:
            for a in actors:
                ray.kill(a)
