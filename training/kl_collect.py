"""KL supervision collection (paper Section 4.2, "Trajectory Sampling Protocol").

Roll out with the highest-precision tier only; at every router decision state ask every
tier for its action distribution and store the action-only ``KL(p_high || p_low)`` of each
lower tier, with the step kind, task metadata and the observation sequence.

``CollectConfig(behaviour=...)`` (``collect-kl --behaviour ROUTER --behaviour-budget K``)
rolls out with a router instead (a baseline name or a router file): the states *that
router* reaches, labelled the same way. A router trained on always-high trajectories has
never seen the states its own low-tier steps lead to; a collection under it, aggregated
with the paper's (``TrainConfig(data="kl,kl_onpolicy")``), is DAgger's data aggregation
(Ross et al., 2011). Not in the paper.

Storage is compact: per episode the step embeddings once (float16 ``[n_vectors, dim]``) and
per state the number ``t`` of vectors seen so far (the observation of that state is the last
``<= max_len`` vectors of ``vectors[:t]``). Episodes are written in shards
(``shard_00000.npz``) with a JSON index (``index.json``); every write is atomic (temp file +
rename), finished shards are skipped on a rerun, so an interrupted collection resumes
where it stopped and yields the same data as an uninterrupted one.

``precision-gym collect-kl --episodes 200 --out runs/kl`` (SIMULATED tiers by default).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from precision_gym import DEFAULT_ENV_ID
from precision_gym.error import CheckpointError, ConfigError
from precision_gym.io import atomic_write_bytes
from training.cli.common import (
    SIMULATED_BANNER,
    add_command,
    add_env_args,
    add_quiet_arg,
    add_workers_args,
    make_env,
)
from training.evaluation import episode_seed

__all__ = [
    "CollectConfig",
    "KLDataset",
    "add_parser",
    "collect_kl",
    "kl_folders",
    "load_kl_dataset",
    "state_kls",
]

INDEX_FILE = "index.json"
FORMAT_VERSION = 1


@dataclass
class CollectConfig:
    """What a collection run gathers; stored in the index and checked on resume."""

    env_id: str = DEFAULT_ENV_ID
    split: str = "train"
    episodes: int = 200
    seed: int = 0
    shard_size: int = 20
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the router that picks each decision's tier during the rollout: a baseline name
    #: (``agents.BASELINE_NAMES``) or a router file (tensors-only); None: the highest tier
    #: (the paper's protocol)
    behaviour: str | None = None
    #: the behaviour router's budget K (its calibrated threshold); a router file only
    behaviour_budget: float | None = None

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.behaviour is not None and not str(self.behaviour).strip():
            raise ConfigError("behaviour must name a router or a baseline, got an empty name")
        if self.behaviour_budget is not None:
            if self.behaviour is None:
                raise ConfigError(
                    "behaviour_budget needs behaviour (the router whose threshold it picks)"
                )
            if not 0.0 < self.behaviour_budget < 1.0:
                raise ConfigError(
                    f"behaviour_budget must lie in (0, 1), got {self.behaviour_budget}"
                )

    def header(self) -> dict[str, Any]:
        """The configuration as the index stores it (the behaviour keys only when set, so
        collections made before they existed resume)."""
        d = asdict(self)
        for k in ("behaviour", "behaviour_budget"):
            if d[k] is None:
                del d[k]
        return d

    def behaviour_policy(self, env: Any) -> Any:
        """The behaviour router loaded for ``env`` (None: the highest tier)."""
        if self.behaviour is None:
            return None
        from training.policies import load_policy

        return load_policy(self.behaviour, env, budget=self.behaviour_budget, seed=self.seed)


# ----------------------------------------------------------------------------- KL per state


def state_kls(env: Any) -> list[float]:
    """Action-only ``KL(p_high || p_k)`` of every lower tier ``k`` on the env's pending state.

    Simulated tiers (``action_distribution``): the exact categorical KL. Real backends: the
    high tier generates its output for the prompt and that action is teacher-forced in
    both tiers (:func:`precision_gym.kl.action_token_kl`); thinking outputs get NaN (no KL
    on thinking tokens, paper App. C.2).
    """
    from precision_gym.kl import action_token_kl, categorical_kl

    u = getattr(env, "unwrapped", env)
    backends = [t.backend for t in u.tiers]
    if all(hasattr(b, "action_distribution") for b in backends):
        ctx = u.step_context()
        p = backends[0].action_distribution(ctx)
        return [categorical_kl(p, b.action_distribution(ctx)) for b in backends[1:]]
    from precision_gym.backends.base import GenerationRequest

    prompt = u.prompter.build_prompt(u.agent_state())
    request = GenerationRequest(prompt, u.prompter.sampling, u.step_context())
    gen = backends[0].generate([request])[0]
    if u.prompter.is_thinking(gen.text):
        return [math.nan] * (len(backends) - 1)
    return [action_token_kl(backends[0], b, prompt, gen.text) for b in backends[1:]]


# ----------------------------------------------------------------------------- atomic I/O


def _write_index(out: Path, index: dict[str, Any]) -> None:
    data = json.dumps(index, indent=2).encode()
    atomic_write_bytes(out / INDEX_FILE, data)


def _read_index(out: Path) -> dict[str, Any] | None:
    path = out / INDEX_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"KL index {path} is not valid JSON ({exc}); delete it") from None


# ----------------------------------------------------------------------------- collection


def _task_sample(n_tasks: int, episodes: int, seed: int) -> list[int]:
    """``episodes`` distinct task indices drawn with ``seed`` (all tasks when larger)."""
    rng = np.random.default_rng(seed)
    if episodes >= n_tasks:
        return list(range(n_tasks))
    return sorted(int(i) for i in rng.choice(n_tasks, size=episodes, replace=False))


def _run_episode(
    env: Any, split: str, seed: int, task_index: int, policy: Any = None
) -> dict[str, Any]:
    """One rollout with per-decision KLs (see the module docstring): every decision on the
    highest tier, or on the tier ``policy`` (a behaviour router) picks."""
    from training.evaluation import charges_router

    u = env.unwrapped
    eseed = episode_seed(seed, task_index)
    if policy is not None and hasattr(policy, "reset"):
        policy.reset(eseed)
    obs, info = env.reset(
        seed=eseed,
        options={
            "split": split,
            "task_index": task_index,
            "charge_router": policy is not None and charges_router(policy),
        },
    )
    n = int(obs["mask"].sum())
    vectors = [obs["embeddings"][i].copy() for i in range(n)]
    rows: dict[str, list[Any]] = {"t": [], "step": [], "kl": [], "kind": [], "tier": []}
    done = False
    step = 0
    state, start = None, np.ones(1, dtype=bool)
    while not done:
        kls = state_kls(env)
        expert = u.step_context().expert_command()
        tier = 0
        if policy is not None:
            action, state = policy.predict(obs, state=state, episode_start=start)
            start = np.zeros(1, dtype=bool)
            tier = int(np.asarray(action).reshape(-1)[0])
        obs, _, terminated, truncated, info = env.step(tier)
        kind = u.task.step_kind(expert or info["action"])
        rows["t"].append(len(vectors))
        rows["step"].append(step)
        rows["kl"].append(kls)
        rows["kind"].append(kind)
        rows["tier"].append(tier)
        # each transition adds one vector per executed agent step (forced ones included)
        added = 1 + len(info.get("forced_steps", []))
        valid = int(obs["mask"].sum())
        vectors.extend(obs["embeddings"][valid - added + i].copy() for i in range(added))
        step += 1
        done = terminated or truncated
    return {
        "vectors": np.asarray(vectors, dtype=np.float16),
        "rows": rows,
        "task_id": info["task_id"],
        "task_type": info["task_type"],
        "task_index": task_index,
        "won": bool(info["won"]),
    }


_WORKER_ENV: Any = None  # a worker process's env (built once by _worker_init)
_WORKER_POLICY: Any = None  # and its behaviour router (None: the highest tier)


def _worker_init(cfg: CollectConfig) -> None:
    global _WORKER_ENV, _WORKER_POLICY
    from precision_gym.threads import configure_torch_threads

    configure_torch_threads(explicit=False)
    _WORKER_ENV = make_env(cfg.env_id, cfg.env_kwargs)
    _WORKER_POLICY = cfg.behaviour_policy(_WORKER_ENV)


def _worker_shard(split: str, seed: int, tasks: list[int]) -> list[dict[str, Any]]:
    return [_run_episode(_WORKER_ENV, split, seed, ti, _WORKER_POLICY) for ti in tasks]


class _ShardActor:
    """A Ray actor holding one env, rolling out the shards it is sent."""

    def __init__(self, cfg: CollectConfig) -> None:
        _worker_init(cfg)

    def run(self, split: str, seed: int, tasks: list[int]) -> list[dict[str, Any]]:
        return _worker_shard(split, seed, tasks)


def _shard_episodes(
    cfg: CollectConfig,
    todo: list[tuple[int, list[int]]],
    workers: int,
    ray_address: str | None,
    local: Any,
    bar: Any,
) -> Any:
    """``(shard index, episodes)`` of every shard of ``todo``, in shard order: rolled out here
    (``local``), by ``workers`` processes (forkserver) or by ``workers`` Ray actors, which
    finish shards side by side."""
    if ray_address is not None and todo:
        from precision_gym.distributed import ray_session

        with ray_session(ray_address) as ray:
            actor_cls = ray.remote(num_cpus=1)(_ShardActor)
            n = min(workers, len(todo))
            actors = [actor_cls.remote(cfg) for _ in range(n)]
            try:
                refs = [
                    (si, actors[k % n].run.remote(cfg.split, cfg.seed, tasks))
                    for k, (si, tasks) in enumerate(todo)
                ]
                for si, ref in refs:  # in order: the index grows as with one process
                    episodes = ray.get(ref)
                    if bar is not None:
                        bar.update(len(episodes))
                    yield si, episodes
            finally:
                for a in actors:
                    ray.kill(a)
        return
    if workers == 1 or len(todo) < 2:
        for si, tasks in todo:
            yield si, local(tasks)
        return
    from training.pools import process_pool

    with process_pool(
        min(workers, len(todo)),
        initializer=_worker_init,
        initargs=(cfg,),
    ) as pool:
        futures = [(si, pool.submit(_worker_shard, cfg.split, cfg.seed, t)) for si, t in todo]
        try:
            for si, fut in futures:  # in order: the index grows as with one process
                episodes = fut.result()
                if bar is not None:
                    bar.update(len(episodes))
                yield si, episodes
        finally:
            for _, fut in futures:
                fut.cancel()


def _save_shard(path: Path, episodes: list[dict[str, Any]], n_low: int) -> int:
    vectors = [e["vectors"] for e in episodes]
    offsets = np.cumsum([0] + [len(v) for v in vectors]).astype(np.int64)
    ep_col, t, step, kl, kind, tier = [], [], [], [], [], []
    for i, e in enumerate(episodes):
        r = e["rows"]
        ep_col += [i] * len(r["t"])
        t += r["t"]
        step += r["step"]
        kl += r["kl"]
        kind += r["kind"]
        tier += r.get("tier", [0] * len(r["t"]))  # (callers before behaviour routers)
    arrays = {
        "vectors": np.concatenate(vectors).astype(np.float16),
        "offsets": offsets,
        "episode": np.asarray(ep_col, dtype=np.int64),
        "t": np.asarray(t, dtype=np.int64),
        "step": np.asarray(step, dtype=np.int64),
        "kl": np.asarray(kl, dtype=np.float64).reshape(len(t), n_low),
        "kind": np.asarray(kind, dtype=str),
        "tier": np.asarray(tier, dtype=np.int64),
        "task_id": np.asarray([e["task_id"] for e in episodes], dtype=str),
        "task_type": np.asarray([e["task_type"] for e in episodes], dtype=str),
        "task_index": np.asarray([e["task_index"] for e in episodes], dtype=np.int64),
        "won": np.asarray([e["won"] for e in episodes], dtype=bool),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return len(t), hashlib.sha256(data).hexdigest()


def _shard_ok(out: Path, entry: dict[str, Any] | None) -> bool:
    """Whether a finished shard's file is intact: its sha256 matches the index (shards of
    older collections, without a hash, must at least open as a complete npz)."""
    if entry is None:
        return False
    path = out / entry["file"]
    if not path.is_file():
        return False
    digest = entry.get("sha256")
    if digest is not None:
        return hashlib.sha256(path.read_bytes()).hexdigest() == digest
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def collect_kl(
    out_dir: str | os.PathLike[str],
    config: CollectConfig | None = None,
    env: Any = None,
    progress: bool = True,
    max_new_shards: int | None = None,
    workers: int = 1,
    ray_address: str | None = None,
) -> Path:
    """Collect KL supervision into ``out_dir`` (resumes a partial run there).

    Args:
        out_dir: folder of the shards and ``index.json``.
        config: what to collect (env, split, episodes, seed, shard size).
        env: an already-built env for ``config.env_id`` (built when None).
        progress: show a tqdm bar (episodes).
        max_new_shards: stop after writing this many new shards (budgeted/incremental runs).
        workers: local worker processes that roll out shards side by side (each builds its
            own env from ``config``); shards are written in order, with the same content as
            one process (an episode depends only on its seed and task).
        ray_address: run those workers as Ray actors on this cluster (``"auto"``, an
            address, or ``"local"``), ``workers`` of them (the ``ray`` extra).

    Returns the folder. Raises :class:`CheckpointError` when the folder holds a collection
    with a different configuration.
    """
    cfg = config or CollectConfig()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
    out = Path(out_dir)
    own_env = env is None
    if own_env:
        env = make_env(cfg.env_id, cfg.env_kwargs)
    u = env.unwrapped
    try:
        policy = cfg.behaviour_policy(env)  # a bad router fails here, before any write
    except BaseException:
        if own_env:
            env.close()
        raise
    out.mkdir(parents=True, exist_ok=True)
    tasks = _task_sample(u.task.num_tasks(cfg.split), cfg.episodes, cfg.seed)
    shards = [tasks[i : i + cfg.shard_size] for i in range(0, len(tasks), cfg.shard_size)]
    header = {
        "format_version": FORMAT_VERSION,
        "config": cfg.header(),
        "task_indices": tasks,
        "tier_names": list(u.tier_names),
        "simulated": bool(u.simulated),
        "embedding_dim": int(u.embedding_dim),
        "max_history": int(u.max_history),
    }
    index = _read_index(out)
    if index is not None:
        theirs = {k: index.get(k) for k in header}
        if theirs != header:
            diff = sorted(k for k in header if theirs[k] != header[k])
            raise CheckpointError(
                f"{out} holds a KL collection with a different configuration (differs in "
                f"{diff}): expected {header['config']}, found {index.get('config')}; use "
                "another --out folder or delete it"
            )
    else:
        index = {**header, "shards": {}}
    index.setdefault("task", u.task.name)  # not part of the header: older collections resume
    _write_index(out, index)
    for k in sorted(index["shards"], key=int):  # truncated / corrupt shards: collect again
        if not _shard_ok(out, index["shards"][k]):
            warnings.warn(
                f"KL shard {out / index['shards'][k]['file']} is missing, truncated or does not "
                "match its sha256 in the index: collecting it again",
                stacklevel=2,
            )
            del index["shards"][k]
            index["complete"] = False
            _write_index(out, index)
    done_eps = sum(len(shards[int(k)]) for k in index["shards"])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), initial=done_eps, desc="collect KL", unit="ep")
    n_low = len(u.tiers) - 1
    todo = [(si, t) for si, t in enumerate(shards) if str(si) not in index["shards"]]
    if max_new_shards is not None:
        todo = todo[:max_new_shards]

    def local(shard_tasks: list[int]) -> list[dict[str, Any]]:
        episodes = []
        for ti in shard_tasks:
            episodes.append(_run_episode(env, cfg.split, cfg.seed, ti, policy))
            if bar is not None:
                bar.update()
        return episodes

    try:
        for si, episodes in _shard_episodes(cfg, todo, workers, ray_address, local, bar):
            fname = f"shard_{si:05d}.npz"
            n_states, digest = _save_shard(out / fname, episodes, n_low)
            index["shards"][str(si)] = {
                "file": fname,
                "sha256": digest,
                "episodes": len(episodes),
                "states": n_states,
                "won": int(sum(e["won"] for e in episodes)),
            }
            _write_index(out, index)
    finally:
        if bar is not None:
            bar.close()
        if own_env:
            env.close()
    index["complete"] = len(index["shards"]) == len(shards)
    _write_index(out, index)
    return out


# ----------------------------------------------------------------------------- loading


@dataclass
class KLDataset:
    """A loaded KL collection: per-state KLs and metadata, and observation rebuilding.

    Attributes (one row per decision state unless noted):
        vectors: float16 ``[total_vectors, dim]`` of every episode, concatenated.
        ep_start: per episode, the offset of its first vector in ``vectors``.
        episode: the state's episode index; ``t``: vectors seen at that state.
        step: decision index in its episode; ``kl``: ``[n_states, n_tiers - 1]``.
        kind: step kind; ``task_id`` / ``task_type``: the state's task.
        tier: the tier the rollout took there (0, the highest, unless a behaviour router
            picked it).
    """

    vectors: np.ndarray
    ep_start: np.ndarray
    episode: np.ndarray
    t: np.ndarray
    step: np.ndarray
    kl: np.ndarray
    kind: np.ndarray
    task_id: np.ndarray
    task_type: np.ndarray
    tier: np.ndarray
    tier_names: list[str]
    simulated: bool
    max_len: int = 64
    task: str | None = None

    def __len__(self) -> int:
        return len(self.t)

    @property
    def n_episodes(self) -> int:
        return len(self.ep_start)

    def observations(self, rows: np.ndarray | list[int]) -> dict[str, np.ndarray]:
        """The env observations (left-aligned, oldest dropped) of states ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        dim = self.vectors.shape[1]
        emb = np.zeros((len(rows), self.max_len, dim), dtype=np.float32)
        mask = np.zeros((len(rows), self.max_len), dtype=np.float32)
        for j, r in enumerate(rows):
            end = int(self.ep_start[self.episode[r]] + self.t[r])
            start = max(int(self.ep_start[self.episode[r]]), end - self.max_len)
            n = end - start
            emb[j, :n] = self.vectors[start:end]
            mask[j, :n] = 1.0
        return {"embeddings": emb, "mask": mask}


def kl_folders(path: str | os.PathLike[str] | list[Any] | tuple[Any, ...]) -> list[Path]:
    """The collection folders ``path`` names: one folder, a list of them, or a
    comma-separated string of them (``"runs/kl,runs/kl_onpolicy"``). A string that names an
    existing folder is that folder, commas and all."""
    if isinstance(path, (list, tuple)):
        names = [str(p) for p in path]
    elif "," in str(path) and not Path(path).is_dir():
        names = [n.strip() for n in str(path).split(",")]
    else:
        names = [str(path)]
    if not names or any(not n for n in names):
        raise ConfigError(
            f"expected one KL collection folder or a comma-separated list of them, got {path!r}"
        )
    return [Path(n) for n in names]


def load_kl_dataset(
    path: str | os.PathLike[str] | list[Any] | tuple[Any, ...], max_len: int | None = None
) -> KLDataset:
    """Load every finished shard of a collection folder, or of several (a list, or a
    comma-separated string: :func:`kl_folders`), concatenated in that order. Several
    collections must come from the same tiers, task and encoder (checked: a
    :class:`ConfigError` names what differs)."""
    parts: dict[str, list[np.ndarray]] = {}
    base = {"episode": 0, "vectors": 0}
    meta: dict[str, Any] | None = None
    first: Path | None = None
    for root in kl_folders(path):
        index = _read_index(root)
        if index is None:
            raise CheckpointError(
                f"no KL collection at {root}: expected {root / INDEX_FILE} (run collect-kl first)"
            )
        mine = {
            "tier_names": list(index["tier_names"]),
            "simulated": bool(index["simulated"]),
            "task": index.get("task"),
            "embedding_dim": index.get("embedding_dim"),
            "max_history": int(index.get("max_history", 64)),
        }
        if meta is None:
            meta, first = mine, root
        elif mine != meta:
            diff = sorted(k for k in meta if meta[k] != mine[k])
            raise ConfigError(
                f"KL collections {first} and {root} differ in {diff}: expected "
                f"{ {k: meta[k] for k in diff} }, got { {k: mine[k] for k in diff} } "
                "(collections are aggregated only from the same tiers, task and encoder)"
            )
        _load_shards(root, index, parts, base)
    assert meta is not None
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return KLDataset(
        **cat,
        tier_names=meta["tier_names"],
        simulated=meta["simulated"],
        max_len=int(max_len or meta["max_history"]),
        task=meta["task"],
    )


def _load_shards(
    root: Path, index: dict[str, Any], parts: dict[str, list[np.ndarray]], base: dict[str, int]
) -> None:
    """Append the finished shards of the collection at ``root`` to ``parts`` (episode and
    vector offsets continue from ``base``, which is advanced)."""
    keys = sorted(index["shards"], key=int)
    if not keys:
        raise CheckpointError(f"the KL collection at {root} has no finished shard yet")
    for k in keys:
        f = root / index["shards"][k]["file"]
        try:
            with np.load(f, allow_pickle=False) as z:
                d = {name: z[name] for name in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CheckpointError(
                f"KL shard {f} is missing or corrupt ({type(exc).__name__}: {exc}): expected "
                "a complete .npz; rerun collect-kl with the same --out to collect it again"
            ) from None
        parts.setdefault("vectors", []).append(d["vectors"])
        parts.setdefault("ep_start", []).append(d["offsets"][:-1] + base["vectors"])
        parts.setdefault("episode", []).append(d["episode"] + base["episode"])
        for name in ("t", "step", "kl", "kind"):
            parts.setdefault(name, []).append(d[name])
        # the tier taken at each state (collections before behaviour routers: all highest)
        parts.setdefault("tier", []).append(d.get("tier", np.zeros(len(d["t"]), np.int64)))
        parts.setdefault("task_id", []).append(d["task_id"][d["episode"]])
        parts.setdefault("task_type", []).append(d["task_type"][d["episode"]])
        base["episode"] += len(d["task_id"])
        base["vectors"] += len(d["vectors"])


# ----------------------------------------------------------------------------- CLI


def cmd_collect(args: argparse.Namespace) -> int:
    """KL supervision: highest-tier (or --behaviour router) rollouts with per-state action KL (resumable)"""
    cfg = CollectConfig(
        env_id=args.env,
        split=args.split,
        episodes=args.episodes,
        seed=args.seed,
        shard_size=args.shard_size,
        env_kwargs=args.env_kwargs or {},
        behaviour=args.behaviour,
        behaviour_budget=args.behaviour_budget,
    )
    out = collect_kl(
        args.out, cfg, progress=not args.quiet, max_new_shards=args.max_shards,
        workers=args.workers, ray_address=args.ray_address,
    )  # fmt: skip
    ds = load_kl_dataset(out)
    index = _read_index(out) or {}
    if index.get("simulated"):
        print(SIMULATED_BANNER, file=sys.stderr)
    kl = ds.kl[:, -1]
    kl = kl[~np.isnan(kl)]
    print(
        f"{out}: {ds.n_episodes} episodes, {len(ds)} decision states; KL(high||lowest): "
        f"{np.mean(kl < 0.01):.0%} < 0.01, {np.mean(kl > 1):.0%} > 1"
        + (f"; {np.mean(ds.tier == 0):.0%} of states on the highest tier" if cfg.behaviour else "")
        + (" [SIMULATED]" if ds.simulated else "")
    )
    return 0


def add_parser(sub: Any) -> None:
    p = add_command(sub, "collect-kl", cmd_collect)
    add_env_args(p)
    p.add_argument("--split", default="train", help="task split to roll out on")
    p.add_argument("--episodes", type=int, default=200, help="tasks sampled from the split")
    p.add_argument("--seed", type=int, default=0, help="task sample and episode seeds")
    p.add_argument("--shard-size", type=int, default=20, help="episodes per shard file")
    p.add_argument("--out", default="runs/kl", help="output folder (reruns resume it)")
    p.add_argument("--max-shards", type=int, default=None, help="stop after this many new shards")
    p.add_argument(
        "--behaviour",
        default=None,
        help="roll out with this router instead of the highest tier: a baseline name or a "
        "router file; the states it reaches get the same KL labels (on-policy data, to "
        "aggregate with the paper's collection: train-klst --data A,B)",
    )
    p.add_argument(
        "--behaviour-budget",
        type=float,
        default=None,
        help="the behaviour router's budget K (its calibrated threshold)",
    )
    add_workers_args(p)
    add_quiet_arg(p)
