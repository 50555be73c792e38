"""Stable-Baselines3 baselines on the registered env: ``precision-gym train-sb3``.

A thin module in SB3's own style: SB3's VecEnv (``make_vec_env`` with ``Monitor``), the
``MultiInputPolicy`` on the env's dict observation, optionally with the router's Transformer
encoder as features extractor (:class:`agents.sb3.RouterFeaturesExtractor`, ``--features
router``) so SB3 and GRPO share an architecture, SB3's TensorBoard logging and
``CheckpointCallback``. The saved ``OUT/model.zip`` evaluates with the same CLI as every
other router::

    precision-gym train-sb3 --algo ppo --total-timesteps 2000 --out runs/ppo
    precision-gym evaluate --router runs/ppo/model.zip

Training episodes can be restricted to a fixed pool of tasks (``--pool-size``), drawn by
:class:`TaskPoolWrapper`; ``OUT/episodes.jsonl`` logs every training episode (env steps so
far, return = success - lambda * T, success, episode time, high-precision fraction).

From a KL-ST router (``--router-checkpoint``), PPO/A2C start from the router's *routing*, not
only its features: the encoder (one copy for the policy, one for the value function, so value
regression cannot disturb the routing) and the action head come from the router
(:func:`agents.sb3.init_action_head_from_router`), with ``--sample-budget K`` adding GRPO's
operating-point bias; PPO and GRPO then begin from the same router. The model is evaluated
greedily on fixed tasks of a held-out split before training, every ``--eval-freq`` env steps
and at the end (``OUT/eval.jsonl``); with ``--keep-best`` (default) ``model.zip`` is the
evaluated model chosen by ``--keep-best-rule`` (:mod:`training.selection`; by default a later
model only when it beats the start by a paired bootstrap bound, else the start). A kept later
model is then tested once more against the start on ``--confirm-episodes`` fresh episodes
(``OUT/confirmation.json``): it ships only if the rule holds there too. The model as training
left it is saved as ``OUT/final_model.zip`` either way, for after-the-fact comparisons.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from precision_gym import DEFAULT_ENV_ID
from precision_gym.error import ConfigError
from precision_gym.io import (
    atomic_write_bytes,
    atomic_write_text,
    refuse_overwrite,
    replacing,
)
from training.cli.common import add_config_parser, config_from_args, run_command
from training.selection import keep_best_fields, validate_keep_best

__all__ = [
    "ALGO_DEFAULTS",
    "SB3Config",
    "TaskPoolWrapper",
    "add_parser",
    "make_model",
    "make_sb3_vec_env",
    "train_sb3",
]

ALGOS = ("ppo", "a2c", "dqn")

#: small-budget defaults (a few thousand env steps on a CPU); override with --algo-kwargs.
#: gamma = 1: the env's return (Eq. 8) is undiscounted, as GRPO optimises it; PPO: Monte
#: Carlo returns (gae_lambda = 1) for the sparse end-of-episode reward, small clip range and
#: a target KL that stops an update's epochs once the policy moved too far, a small entropy
#: bonus (SB3 normalises advantages per minibatch by default).
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {
        "n_steps": 256,
        "batch_size": 64,
        "n_epochs": 4,
        "gamma": 1.0,
        "gae_lambda": 1.0,
        "learning_rate": 1e-4,
        "clip_range": 0.1,
        "target_kl": 0.03,
        "ent_coef": 0.001,
    },
    "a2c": {"n_steps": 16, "gamma": 1.0, "learning_rate": 3e-4},
    "dqn": {
        "buffer_size": 2_000,  # a [64, 384] observation is 98 KB: keep the buffer small
        "learning_starts": 100,
        "train_freq": 4,
        "target_update_interval": 250,
        "exploration_fraction": 0.3,
        "gamma": 1.0,
        "learning_rate": 1e-4,
    },
}


@dataclass
class SB3Config:
    """Configuration of an SB3 baseline run (validated on creation)."""

    algo: str = field(default="ppo", metadata={"help": "ppo | a2c | dqn"})
    env_id: str = field(default=DEFAULT_ENV_ID, metadata={"help": "registered env id"})
    env_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "JSON object of extra env kwargs"}
    )
    split: str = field(default="train", metadata={"help": "split the training tasks come from"})
    pool_size: int | None = field(
        default=None, metadata={"help": "train on this many tasks spread over the split"}
    )
    total_timesteps: int = field(
        default=2_000, metadata={"help": "env steps (routing decisions) to train for"}
    )
    n_envs: int = field(default=1, metadata={"help": "parallel envs in the SB3 VecEnv"})
    vec_env: str = field(default="dummy", metadata={"help": "'dummy' or 'subproc' SB3 VecEnv"})
    cost_weight: float = field(default=0.02, metadata={"help": "lambda of Eq. 8"})
    features: str = field(
        default="router",
        metadata={"help": "'router' (Transformer encoder) or 'mlp' (SB3's CombinedExtractor)"},
    )
    d_model: int = field(default=64, metadata={"help": "router encoder width"})
    n_layers: int = field(default=2, metadata={"help": "router encoder depth"})
    n_heads: int = field(default=4, metadata={"help": "router encoder attention heads"})
    router_checkpoint: str | None = field(
        default=None, metadata={"help": "initialise the encoder from a router file (KL-ST)"}
    )
    init_policy: bool = field(
        default=True,
        metadata={
            "help": "with router_checkpoint (ppo/a2c): also copy the router's action head, so "
            "the policy starts from the router's routing (separate encoder copy for the value)"
        },
    )
    sample_budget: float | None = field(
        default=None,
        metadata={
            "help": "with init_policy: start at the router's calibrated budget K operating "
            "point (add log((1 - tau_K) / tau_K) to the high tier's logit), as GRPO samples"
        },
    )
    eval_freq: int = field(
        default=2_000,
        metadata={"help": "evaluate before training, every N env steps and at the end (0 = never)"},
    )
    eval_split: str | None = field(
        default=None,
        metadata={"help": "evaluation split (None = valid_train for ALFWorld, eval for WebShop)"},
    )
    eval_episodes: int
    keep_best: bool
    keep_best_rule: str
    keep_best_level: float
    confirm_episodes: int
    eval_episodes, keep_best, keep_best_rule, keep_best_level, confirm_episodes = keep_best_fields(
        what="model",
        shipped="model.zip",
        needs="eval_freq",
        otherwise="the start model is shipped (confirmation.json; 0 = no confirmation)",
    )
    algo_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "JSON object overriding SB3 algorithm kwargs"}
    )
    checkpoint_freq: int = field(
        default=500, metadata={"help": "env steps between SB3 checkpoints (0 = none)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of SB3, the envs and the task draw"})
    out: str = field(default="runs/sb3", metadata={"help": "output folder"})
    tensorboard: bool = field(default=True, metadata={"help": "TensorBoard logs in OUT/tb"})
    progress: bool = field(default=True, metadata={"help": "show SB3's progress bar"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "train into an OUT that already holds a model.zip / episodes.jsonl "
            "(replaced when the new run finishes); without it such a folder is refused"
        },
    )

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.features not in ("router", "mlp"):
            raise ConfigError(f"features must be 'router' or 'mlp', got {self.features!r}")
        if self.vec_env not in ("dummy", "subproc"):
            raise ConfigError(f"vec_env must be 'dummy' or 'subproc', got {self.vec_env!r}")
        if self.total_timesteps < 1 or self.n_envs < 1:
            raise ConfigError(
                f"total_timesteps and n_envs must be >= 1, got {self.total_timesteps}, "
                f"{self.n_envs}"
            )
        if self.cost_weight < 0:
            raise ConfigError(f"cost_weight (lambda) must be >= 0, got {self.cost_weight}")
        if self.pool_size is not None and self.pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1 or None, got {self.pool_size}")
        if self.checkpoint_freq < 0:
            raise ConfigError(f"checkpoint_freq must be >= 0, got {self.checkpoint_freq}")
        if self.eval_freq < 0 or self.eval_episodes < 1:
            raise ConfigError(
                "eval_freq must be >= 0 and eval_episodes >= 1, got "
                f"{self.eval_freq} and {self.eval_episodes}"
            )
        validate_keep_best(self.keep_best_rule, self.keep_best_level, self.confirm_episodes)
        if self.sample_budget is not None and not 0.0 < self.sample_budget < 1.0:
            raise ConfigError(f"sample_budget must be in (0, 1) or None, got {self.sample_budget}")
        if self.sample_budget is not None and not self.initialises_policy:
            raise ConfigError(
                "sample_budget needs the policy initialised from a router: expected "
                "algo ppo|a2c, features 'router', router_checkpoint and init_policy, got "
                f"algo={self.algo!r}, features={self.features!r}, "
                f"router_checkpoint={self.router_checkpoint!r}, init_policy={self.init_policy}"
            )

    @property
    def initialises_policy(self) -> bool:
        """True when the actor's encoder and head both come from ``router_checkpoint``."""
        return bool(
            self.init_policy
            and self.router_checkpoint
            and self.features == "router"
            and self.algo in ("ppo", "a2c")
        )


class TaskPoolWrapper(gym.Wrapper):
    """Each ``reset()`` without a ``task_index`` draws one from a fixed pool of ``split``
    (with the wrapper's own generator, reseeded by ``reset(seed=...)``), so option-less resets of SB3's VecEnv train
    on the chosen tasks."""

    def __init__(self, env: gym.Env, split: str, pool: list[int]) -> None:
        super().__init__(env)
        if not pool:
            raise ConfigError("the task pool is empty: expected at least one task index")
        self.split, self.pool = split, list(pool)
        self._pool_rng = np.random.default_rng(0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._pool_rng = np.random.default_rng(seed)
        options = dict(options or {})
        options.setdefault("split", self.split)
        if "task_index" not in options:
            options["task_index"] = int(self.pool[self._pool_rng.integers(len(self.pool))])
        return self.env.reset(seed=seed, options=options)


def task_pool(env_id: str, env_kwargs: dict[str, Any], split: str, size: int | None) -> list[int]:
    from training.evaluation import select_tasks

    env = gym.make(env_id, **env_kwargs)
    try:
        return select_tasks(env.unwrapped.task.num_tasks(split), size)
    finally:
        env.close()


def make_sb3_vec_env(cfg: SB3Config) -> Any:
    """SB3 VecEnv (with ``Monitor``) of ``n_envs`` task-pool envs."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    import precision_gym  # noqa: F401

    kwargs = {**cfg.env_kwargs, "cost_weight": cfg.cost_weight}
    pool = task_pool(cfg.env_id, kwargs, cfg.split, cfg.pool_size)
    return make_vec_env(
        cfg.env_id,
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        # make_vec_env defaults render_mode to "rgb_array" (supported); training needs no frames
        env_kwargs={"render_mode": None, **kwargs},
        wrapper_class=TaskPoolWrapper,
        wrapper_kwargs={"split": cfg.split, "pool": pool},
        vec_env_cls=DummyVecEnv if cfg.vec_env == "dummy" else SubprocVecEnv,
    )


def make_model(cfg: SB3Config, venv: Any) -> Any:
    """The SB3 algorithm with ``MultiInputPolicy`` (+ the router encoder if asked)."""
    import stable_baselines3 as sb3

    policy_kwargs: dict[str, Any] = {}
    if cfg.features == "router":
        from agents.sb3 import RouterFeaturesExtractor

        extractor_kwargs: dict[str, Any] = (
            {"router_checkpoint": cfg.router_checkpoint}
            if cfg.router_checkpoint
            else {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads}
        )
        policy_kwargs = {
            "features_extractor_class": RouterFeaturesExtractor,
            "features_extractor_kwargs": extractor_kwargs,
        }
        if cfg.router_checkpoint and cfg.algo in ("ppo", "a2c"):
            # SB3's orthogonal init re-draws every Linear of the features extractor too: it
            # would throw the router's trained encoder away
            policy_kwargs["ortho_init"] = False
        if cfg.initialises_policy:  # the action net reads the router's features directly
            policy_kwargs["net_arch"] = {"pi": [], "vf": [64]}
            policy_kwargs["share_features_extractor"] = False
        elif cfg.algo in ("ppo", "a2c"):
            policy_kwargs["net_arch"] = {"pi": [64], "vf": [64]}
        else:
            policy_kwargs["net_arch"] = [64]
    cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[cfg.algo]
    kwargs = {**ALGO_DEFAULTS[cfg.algo], **cfg.algo_kwargs}
    try:
        model = cls(
            "MultiInputPolicy",
            venv,
            policy_kwargs=policy_kwargs or None,
            seed=cfg.seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(Path(cfg.out) / "tb") if cfg.tensorboard else None,
            **kwargs,
        )
    except TypeError as exc:  # an --algo-kwargs key the algorithm does not take
        raise ConfigError(
            f"{cls.__name__} rejected its kwargs {sorted(kwargs)}: {exc} (check --algo-kwargs)"
        ) from None
    if cfg.initialises_policy:
        from agents.sb3 import init_action_head_from_router
        from training.grpo import budget_bias

        bias = 0.0
        if cfg.sample_budget is not None:
            bias = budget_bias(cfg.router_checkpoint, cfg.sample_budget)
        init_action_head_from_router(model.policy, str(cfg.router_checkpoint), bias)
    return model


def _episode_callback(path: Path) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeLog(BaseCallback):
        """Append one JSON line per finished training episode (the learning curve)."""

        def _on_training_start(self) -> None:
            self._file = path.open("a")

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=False):
                if done and "episode" in info:
                    row = {
                        "env_steps": int(self.num_timesteps),
                        "return": float(info["episode"]["r"]),
                        "won": bool(info.get("won", False)),
                        "episode_time_s": float(info.get("episode_time_s", np.nan)),
                        "hp_fraction": float(info.get("hp_fraction", np.nan)),
                        "task_index": int(info.get("task_index", -1)),
                    }
                    self._file.write(json.dumps(row) + "\n")
            return True

        def _on_training_end(self) -> None:
            self._file.close()

    return EpisodeLog()


def _eval_split(env: Any, split: str | None) -> str:
    from training.grpo import _default_calibration_split

    return split or _default_calibration_split(env.unwrapped)


def _keep_best_callback(cfg: SB3Config, out: Path) -> Any:
    """Evaluate the model greedily on fixed tasks of the evaluation split before training,
    every ``eval_freq`` env steps and at the end; save the best (``best_model.zip``)."""
    from stable_baselines3.common.callbacks import BaseCallback

    from training.evaluation import evaluate
    from training.policies import SB3Policy
    from training.selection import eval_plan, eval_row, select_best

    class EvalKeepBest(BaseCallback):
        def _on_training_start(self) -> None:
            self.env = gym.make(cfg.env_id, **{**cfg.env_kwargs, "cost_weight": cfg.cost_weight})
            self.split = _eval_split(self.env, cfg.eval_split)
            n_tasks = self.env.unwrapped.task.num_tasks(self.split)
            self.tasks, self.seeds = eval_plan(n_tasks, cfg.eval_episodes, cfg.seed)
            self.rows: list[dict[str, Any]] = []
            self.best: dict[str, Any] | None = None
            self.best_params: dict[str, Any] | None = None
            # the start model, shipped when a kept later one is not confirmed
            _atomic_sb3_save(self.model, out / "start_model.zip")
            self.start_params = copy.deepcopy(self.model.get_parameters())
            self.next_at = 0
            self._evaluate()

        def _evaluate(self) -> None:
            result = evaluate(
                SB3Policy(self.model), self.env, split=self.split, task_indices=self.tasks,
                seeds=self.seeds, progress=False,
            )  # fmt: skip
            row = {"env_steps": int(self.num_timesteps)} | eval_row(result.records, self.split)
            self.rows.append(row)
            choice = (
                select_best(self.rows, rule=cfg.keep_best_rule, level=cfg.keep_best_level)
                if cfg.keep_best
                else None
            )
            if choice == len(self.rows) - 1:
                _atomic_sb3_save(self.model, out / "best_model.zip")
                self.best = row
                self.best_params = copy.deepcopy(self.model.get_parameters())
            elif choice == 0 and self.best is not self.rows[0]:  # 'final': the start is back
                start = (out / "start_model.zip").read_bytes()
                atomic_write_bytes(out / "best_model.zip", start)
                self.best, self.best_params = self.rows[0], self.start_params
            self.next_at = self.num_timesteps + cfg.eval_freq

        def _on_step(self) -> bool:
            # a step that reaches the total is left to _on_training_end, which comes after
            # the last update: the end row is the model training ended with
            if self.next_at <= self.num_timesteps < self.model._total_timesteps:
                self._evaluate()
            return True

        def _on_training_end(self) -> None:
            if self.rows[-1]["env_steps"] != self.num_timesteps:
                self._evaluate()
            self.env.close()

    return EvalKeepBest()


def _confirm(cfg: SB3Config, model: Any, evaluator: Any) -> dict[str, Any]:
    """``confirm_episodes``: the kept model against the start model on fresh episodes of the
    evaluation split; ``keep_best_rule`` decides once more (``confirmation.json``). The
    models are played from their weights in memory; ``model`` is left holding the kept one's."""
    from training.evaluation import evaluate, write_json
    from training.policies import SB3Policy
    from training.selection import confirm_plan, confirmation, eval_row

    env = gym.make(cfg.env_id, **{**cfg.env_kwargs, "cost_weight": cfg.cost_weight})
    try:
        split = evaluator.split
        n = env.unwrapped.task.num_tasks(split)
        used = (evaluator.tasks, evaluator.seeds)  # the keep-best evaluations' episodes
        tasks, seeds = confirm_plan(n, cfg.confirm_episodes, cfg.seed, used)
        rows = {}
        for name, params in (("start", evaluator.start_params), ("refined", evaluator.best_params)):
            model.set_parameters(params)
            result = evaluate(
                SB3Policy(model), env, split=split, task_indices=tasks, seeds=seeds,
                progress=False,
            )  # fmt: skip
            rows[name] = eval_row(result.records, split)
    finally:
        env.close()
    data = {
        "split": split,
        "tasks": tasks,
        "seeds": list(seeds),
        "env_steps": evaluator.best["env_steps"],
    }
    data |= confirmation(
        rows["start"], rows["refined"], rule=cfg.keep_best_rule, level=cfg.keep_best_level
    )
    write_json(data, Path(cfg.out) / "confirmation.json")
    return data


def _shipped_steps(evaluator: Any, confirmation: dict[str, Any] | None, model: Any) -> int:
    """Env steps of the model in model.zip: the kept evaluation's, the start's (0) where the
    confirmation failed, the last without keep-best."""
    if evaluator is None or evaluator.best is None:
        return int(model.num_timesteps)
    if confirmation is not None and confirmation["router"] == "start":
        return int(evaluator.rows[0]["env_steps"])
    return int(evaluator.best["env_steps"])


def _atomic_sb3_save(model: Any, path: Path) -> None:
    """``model.save`` into memory, then one atomic write of ``path``."""
    buf = io.BytesIO()
    model.save(buf)
    atomic_write_bytes(path, buf.getvalue())


def train_sb3(cfg: SB3Config) -> dict[str, Any]:
    """Train ``cfg.algo`` and save ``OUT/model.zip``; returns a summary dict."""
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if not cfg.overwrite:  # before any work: never replace a trained model silently
        refuse_overwrite(out, ["model.zip", "episodes.jsonl"], flags="--overwrite")
    out.mkdir(parents=True, exist_ok=True)
    # --overwrite: the earlier run's side outputs are set aside, so no stale checkpoint zip,
    # TensorBoard run or evaluation log sits beside the new ones; restored if this run fails
    with replacing(out, REPLACED if cfg.overwrite else ()):
        return _train_sb3(cfg, out, t0)


#: outputs an ``--overwrite`` run rewrites from scratch (model.zip and episodes.jsonl are
#: replaced atomically at the end)
REPLACED = (
    "checkpoints",
    "tb",
    "best_model.zip",
    "start_model.zip",
    "final_model.zip",
    "eval.jsonl",
    "summary.json",
    "confirmation.json",
)


def _train_sb3(cfg: SB3Config, out: Path, t0: float) -> dict[str, Any]:
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

    episodes = out / "episodes.jsonl"
    # the learning curve is appended to a side file while training runs and replaces
    # episodes.jsonl only at the end: an earlier run's log is never emptied
    partial = out / "episodes.jsonl.partial"
    partial.unlink(missing_ok=True)
    venv = make_sb3_vec_env(cfg)
    try:
        model = make_model(cfg, venv)
        callbacks = [_episode_callback(partial)]
        evaluator = _keep_best_callback(cfg, out) if cfg.eval_freq else None
        if evaluator is not None:
            callbacks.append(evaluator)
        if cfg.checkpoint_freq:
            callbacks.append(
                CheckpointCallback(
                    save_freq=max(cfg.checkpoint_freq // cfg.n_envs, 1),
                    save_path=str(out / "checkpoints"),
                    name_prefix=cfg.algo,
                )
            )
        model.learn(
            total_timesteps=cfg.total_timesteps,
            callback=CallbackList(callbacks),
            tb_log_name=cfg.algo,
            progress_bar=cfg.progress and _has_progress_bar_deps(),
        )
        confirmation = None
        if evaluator is not None and evaluator.best is not None:
            # the last model too, whatever ships (the confirmation below loads other weights)
            _atomic_sb3_save(model, out / "final_model.zip")
            chosen = "best_model.zip"
            if evaluator.best is not evaluator.rows[0] and cfg.confirm_episodes:
                confirmation = _confirm(cfg, model, evaluator)
                if confirmation["router"] == "start":  # the kept model did not hold up
                    chosen = "start_model.zip"
            atomic_write_bytes(out / "model.zip", (out / chosen).read_bytes())
        else:
            _atomic_sb3_save(model, out / "model.zip")
    finally:
        venv.close()
    text = partial.read_text() if partial.exists() else ""
    rows = [json.loads(line) for line in text.splitlines() if line]
    atomic_write_text(episodes, text)
    partial.unlink(missing_ok=True)
    evals = evaluator.rows if evaluator is not None else []
    if evals:
        atomic_write_text(out / "eval.jsonl", "".join(json.dumps(r) + "\n" for r in evals))
    last = rows[-20:]
    summary = {
        "algo": cfg.algo,
        "model": str(out / "model.zip"),
        "env_steps": int(model.num_timesteps),
        "episodes": len(rows),
        "last_episodes_mean_return": float(np.mean([r["return"] for r in last]))
        if last
        else float("nan"),
        "wall_time_s": time.perf_counter() - t0,
        "evaluations": evals,
        "selected_env_steps": _shipped_steps(evaluator, confirmation, model),
        "confirmation": confirmation,
        "config": asdict(cfg),
    }
    from training.evaluation import write_json

    write_json(summary, out / "summary.json")
    return summary


def _has_progress_bar_deps() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_train_sb3(args: argparse.Namespace) -> int:
    cfg = config_from_args(SB3Config, args)
    summary = train_sb3(cfg)
    print(
        f"{cfg.algo.upper()}: {summary['env_steps']} env steps, {summary['episodes']} episodes "
        f"in {summary['wall_time_s']:.0f} s; mean return of the last 20 training episodes "
        f"{summary['last_episodes_mean_return']:.3f}"
    )
    evals = summary["evaluations"]
    if evals:
        chosen = next(e for e in evals if e["env_steps"] == summary["selected_env_steps"])
        print(
            f"evaluation on {chosen['split']} ({chosen['episodes']} episodes): utility "
            f"{evals[0]['utility']:.3f} at the start, {evals[-1]['utility']:.3f} at "
            f"{evals[-1]['env_steps']} steps; kept the model of step {chosen['env_steps']} "
            f"(utility {chosen['utility']:.3f}, keep-best rule {cfg.keep_best_rule!r})"
        )
    if summary["confirmation"]:
        from training.selection import confirmation_line

        conf = summary["confirmation"]
        print(confirmation_line(conf, f"step {conf['env_steps']}"))
    print(f"evaluate: precision-gym evaluate --env {cfg.env_id} --router {summary['model']}")
    return 0


def add_parser(subparsers: Any) -> None:
    add_config_parser(
        subparsers,
        "train-sb3",
        SB3Config,
        cmd_train_sb3,
        help="Stable-Baselines3 PPO / A2C / DQN on the env (MultiInputPolicy)",
        doc=__doc__,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_command(add_parser))
