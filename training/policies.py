"""The one policy loader, :func:`load_policy`: a baseline name or a file, so ``precision-gym
evaluate --router NAME|PATH`` (and sweeps, rollout workers and benchmarks) serve every
algorithm: baselines, Transformer-router checkpoints, MLP policies (``agents.mlp``: RLlib
and CleanRL-style agents) and Stable-Baselines3 / sb3-contrib models.

An SB3 ``.zip`` is identified before anything in it is unpickled: its ``data`` member is JSON
in which the policy class's module and the algorithm's hyper-parameters are plain text
(:func:`detect_sb3_algo`). A model this evaluator cannot run faithfully (a continuous action
space, a custom policy class, a tier count or observation layout the env does not have) is
refused with a message, never evaluated wrongly.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import RouterPolicy
from precision_gym.deprecation import warn_renamed
from precision_gym.envs.layouts import convert_observation, layout_of_space
from precision_gym.error import CheckpointError, ConfigError

__all__ = [
    "SB3_ALGOS",
    "TRUST_HELP",
    "SB3Algo",
    "SB3Policy",
    "check_policy_matches_env",
    "detect_sb3_algo",
    "load_policy",
    "load_policy_file",
]

SB3_ALGOS = ("ppo", "a2c", "dqn")


@dataclass(frozen=True)
class SB3Algo:
    """An SB3-family algorithm class: ``package.Class`` and whether it carries a state."""

    package: str
    cls: str
    recurrent: bool = False

    @property
    def qualname(self) -> str:
        return f"{self.package}.{self.cls}"

    def load_class(self) -> Any:
        import importlib

        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            extra = "sb3-contrib" if self.package == "sb3_contrib" else "stable-baselines3"
            raise CheckpointError(
                f"the model is a {self.qualname} but {self.package} is not installed "
                f"(pip install {extra}, or precision-gym[sb3])"
            ) from exc
        return getattr(module, self.cls)


# policy-class module -> algorithm; the actor-critic module is shared (decided by its
# hyper-parameters below)
_BY_POLICY_MODULE = {
    "stable_baselines3.dqn.policies": SB3Algo("stable_baselines3", "DQN"),
    "sb3_contrib.common.recurrent.policies": SB3Algo("sb3_contrib", "RecurrentPPO", True),
    "sb3_contrib.common.maskable.policies": SB3Algo("sb3_contrib", "MaskablePPO"),
    "sb3_contrib.qrdqn.policies": SB3Algo("sb3_contrib", "QRDQN"),
    "sb3_contrib.ars.policies": SB3Algo("sb3_contrib", "ARS"),
}
_CONTINUOUS_ONLY = {
    "stable_baselines3.sac.policies": "SAC",
    "stable_baselines3.td3.policies": "TD3/DDPG",
    "sb3_contrib.tqc.policies": "TQC",
    "sb3_contrib.crossq.policies": "CrossQ",
}
_ACTOR_CRITIC = "stable_baselines3.common.policies"


def _read_data(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            if "data" not in zf.namelist():
                raise CheckpointError(
                    f"{path} is a zip file but not a Stable-Baselines3 model: expected a 'data' "
                    f"member, found {sorted(zf.namelist())[:8]}"
                )
            raw = zf.read("data")
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path} is not a readable zip archive: {exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the 'data' member is not SB3's JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("policy_class"), dict):
        raise CheckpointError(f"{path}: expected SB3 data with a 'policy_class' entry")
    return data


def detect_sb3_algo(path: str | Path, n_tiers: int | None = None) -> SB3Algo:
    """The algorithm class that saved the SB3 / sb3-contrib archive ``path``.

    Read from the archive's JSON (the policy class's module, the algorithm's
    hyper-parameter names and the action space's type), without unpickling anything.
    ``n_tiers``: refuse a model whose action space is not ``Discrete(n_tiers)``.
    """
    path = Path(path)
    data = _read_data(path)
    module = str(data["policy_class"].get("__module__", "?"))
    space = data.get("action_space", {}) if isinstance(data.get("action_space"), dict) else {}
    space_type = str(space.get(":type:", "?"))
    if module in _CONTINUOUS_ONLY or "Discrete" not in space_type:
        name = _CONTINUOUS_ONLY.get(module, f"a model with a {module} policy")
        raise CheckpointError(
            f"{path} is {name} with action space {space_type}: expected a Discrete(n_tiers) "
            "action space (a tier index per decision); continuous-action algorithms cannot "
            "route precision"
        )
    if n_tiers is not None and str(space.get("n")) != str(n_tiers):
        raise CheckpointError(
            f"{path} was trained with Discrete({space.get('n')}) actions, the env has "
            f"{n_tiers} tiers: expected Discrete({n_tiers})"
        )
    if module in _BY_POLICY_MODULE:
        return _BY_POLICY_MODULE[module]
    if module == _ACTOR_CRITIC:
        if "cg_max_steps" in data:
            return SB3Algo("sb3_contrib", "TRPO")
        if "clip_range" in data:
            return SB3Algo("stable_baselines3", "PPO")
        return SB3Algo("stable_baselines3", "A2C")
    raise CheckpointError(
        f"{path} uses a policy class from {module!r}, which this loader does not know: "
        "expected a policy of stable_baselines3 or sb3_contrib. Evaluate it from Python: "
        "training.evaluation.evaluate(training.policies.SB3Policy(model), env)"
    )


class SB3Policy(RouterPolicy):
    """A Stable-Baselines3 / sb3-contrib model behind the router contract.

    It charges router cost (a learned network runs at every decision), forwards ``state``
    and ``episode_start`` to ``model.predict`` (recurrent models such as ``RecurrentPPO``
    carry their LSTM state across decisions), and shows the model the observation layout
    it was trained on: the env's observation is passed through when the spaces match,
    otherwise a ``dict`` observation is converted (``precision_gym.envs.layouts``).

    Args:
        model: a loaded SB3-family model with a ``Discrete`` action space.
        name: the name reported by the evaluator.
        layout: the model's observation layout when its space cannot tell (``last`` and
            ``mean`` share one); None: worked out from ``model.observation_space``.
    """

    charge_router = True

    def __init__(self, model: Any, name: str = "sb3", layout: str | None = None) -> None:
        super().__init__(int(model.action_space.n))
        self.model = model
        self.name = name
        self.layout = layout
        self.recurrent = hasattr(model.policy, "lstm_actor")

    def _model_layout(self, obs: Any) -> str | None:
        """The layout to convert ``obs`` into (None: pass it through unchanged)."""
        space = self.model.observation_space
        if not isinstance(obs, dict):  # the env gives a vector layout: it must be the model's
            shape = np.shape(obs)
            if space.shape is None or tuple(shape[-len(space.shape) :]) != space.shape:
                raise CheckpointError(
                    f"{self.name} reads observations {space}, the env gives shape {shape}: "
                    "make the env in the model's observation_layout"
                )
            return None
        mask = np.asarray(obs["mask"])
        emb = np.asarray(obs["embeddings"])
        max_history = int(mask.shape[-1])
        dim = int(emb.shape[-1]) if emb.ndim > mask.ndim else int(emb.shape[-1]) // max_history
        found = layout_of_space(space, max_history, dim)
        if found == "last|mean":
            if self.layout not in ("last", "mean"):
                raise CheckpointError(
                    f"{self.name} reads one {dim}-vector per decision (layout 'last' or "
                    "'mean'), the env gives the dict layout: make the env in the model's "
                    'layout (--env-kwargs \'{"observation_layout": "last"}\' or "mean")'
                )
            found = self.layout
        if found == "dict" and emb.ndim > mask.ndim:
            return None
        return found

    def predict(
        self,
        obs: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        layout = self._model_layout(obs)
        if layout is not None:
            obs = convert_observation(obs, layout)
        actions, state = self.model.predict(
            obs, state=state, episode_start=episode_start, deterministic=deterministic
        )
        return np.asarray(actions, dtype=np.int64), state

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        actions, _ = self.predict(obs, deterministic=deterministic)
        return actions.reshape(-1)


TRUST_HELP = (
    "load a Stable-Baselines3 .zip: SB3 archives are cloudpickle, and unpickling a file "
    "can run any code in it, so only pass this for files you made or trust "
    "(router .pt checkpoints are tensors-only and need no flag)"
)


def _check_sb3_archive(path: Path, trust_checkpoint: bool) -> None:
    """Refuse a truncated archive, then (before anything is unpickled) an untrusted one."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} is not a complete zip archive ({type(exc).__name__}: {exc}): expected a "
            "Stable-Baselines3 model saved with model.save()"
        ) from None
    if bad is not None:
        raise CheckpointError(f"{path} is a corrupt zip archive (bad member {bad!r})")
    if not trust_checkpoint:
        raise CheckpointError(
            f"{path} is a Stable-Baselines3 archive: loading it unpickles Python objects "
            "(cloudpickle), which can run arbitrary code; expected --trust-checkpoint "
            "(trust_checkpoint=True) to load it, given only for files you made or trust"
        )


def check_policy_matches_env(policy: RouterPolicy, env: Any, source: str | Path) -> None:
    """Refuse a router trained for another env: tier count, tier names, task, embedding size
    (SB3 models: :func:`detect_sb3_algo` and :class:`SB3Policy` check tiers and layout)."""
    u = env.unwrapped
    n_env = int(env.action_space.n)
    env_tiers = list(getattr(u, "tier_names", []))
    if policy.n_tiers != n_env:
        raise ConfigError(
            f"{source} routes between {policy.n_tiers} precision tiers, but the env has "
            f"{n_env} {env_tiers}: expected a router trained on this env's tiers"
        )
    meta = getattr(policy, "metadata", {}) or {}
    tiers = meta.get("tier_names")
    if tiers is not None and env_tiers and list(tiers) != env_tiers:
        raise ConfigError(
            f"{source} was trained on tiers {list(tiers)}, but the env has {env_tiers}"
        )
    task = meta.get("task")
    env_task = getattr(getattr(u, "task", None), "name", None)
    if task is not None and env_task is not None and task != env_task:
        raise ConfigError(
            f"{source} was trained on the {task!r} task, but the env runs {env_task!r}: "
            "expected a router trained on this task"
        )
    config = getattr(policy, "config", None)
    dim = getattr(u, "embedding_dim", None)
    if config is not None and dim is not None and config.embed_dim != dim:
        raise ConfigError(
            f"{source} reads {config.embed_dim}-d step embeddings, but the env's encoder "
            f"gives {dim}-d"
        )


def load_policy(
    router: str | os.PathLike[str],
    env: Any,
    p_high: float | None = None,
    budget: float | None = None,
    seed: int = 0,
    online_step: float | None = None,
    trust_checkpoint: bool = False,
) -> RouterPolicy:
    """The policy ``router`` names for ``env``: a baseline (``agents.BASELINE_NAMES``;
    ``random`` takes ``p_high`` and ``seed``) or a file. A file is a Stable-Baselines3 /
    sb3-contrib ``.zip`` (algorithm detected by :func:`detect_sb3_algo`; unpickled, so only
    with ``trust_checkpoint=True``), an MLP policy (``agents.mlp``) or a Transformer-router
    checkpoint (``agents.router.TransformerRouterPolicy.save``; both tensors-only). A
    router's ``budget`` K picks its calibrated threshold, ``online_step`` holds K online
    (``agents.router.OnlineBudgetControl``); it must fit ``env``
    (:func:`check_policy_matches_env`)."""
    from agents import BASELINE_NAMES, make_baseline

    if isinstance(router, str) and router in BASELINE_NAMES:
        if budget is not None or online_step is not None:
            raise ValueError(
                f"--budget/--online-step apply to a trained router file, not to {router!r}"
            )
        return make_baseline(router, env, p_high=p_high, seed=seed)
    path = Path(router)
    if not path.exists():
        raise FileNotFoundError(
            f"router {str(router)!r} is neither a baseline name ({', '.join(BASELINE_NAMES)}) "
            f"nor an existing file (looked at {path.resolve()})"
        )
    if online_step is not None and budget is None:
        raise ValueError("--online-step needs --budget K (the budget the controller holds)")
    return _load_file(path, env, budget, online_step, trust_checkpoint)


def load_policy_file(
    path: str | Path,
    env: Any,
    budget: float | None = None,
    online_step: float | None = None,
    trust_checkpoint: bool = False,
) -> RouterPolicy:
    """Deprecated: :func:`load_policy` (which also takes baseline names)."""
    warn_renamed("training.policies.load_policy_file", "training.policies.load_policy")
    return _load_file(Path(path), env, budget, online_step, trust_checkpoint)


def _load_file(
    path: Path,
    env: Any,
    budget: float | None,
    online_step: float | None,
    trust_checkpoint: bool,
) -> RouterPolicy:
    """A policy from a file (see :func:`load_policy`)."""
    from agents.mlp import MLP_CHECKPOINT_FORMAT, MLPPolicy  # torch: only to load a file

    if path.suffix == ".zip":
        if budget is not None or online_step is not None:
            raise ValueError(
                "--budget/--online-step apply to calibrated router checkpoints, not to SB3 models"
            )
        algo = detect_sb3_algo(path, n_tiers=int(env.action_space.n))  # reads JSON only
        _check_sb3_archive(path, trust_checkpoint)  # before anything is unpickled
        model = algo.load_class().load(str(path), device="cpu")
        layout = getattr(getattr(env, "unwrapped", env), "observation_layout", None)
        policy = SB3Policy(model, name=f"sb3-{algo.cls.lower()}:{path.stem}", layout=layout)
        policy._model_layout(env.observation_space.sample())  # a layout mismatch fails now
        return policy
    if _torch_format(path) == MLP_CHECKPOINT_FORMAT:
        if budget is not None or online_step is not None:
            raise ValueError(
                "--budget/--online-step apply to calibrated router checkpoints, not to MLP policies"
            )
        policy = MLPPolicy.load(path)
        if policy.n_tiers != int(env.action_space.n):
            raise CheckpointError(
                f"{path} routes over {policy.n_tiers} tiers, the env has "
                f"{int(env.action_space.n)}: expected the same tier count"
            )
        env_layout = getattr(getattr(env, "unwrapped", env), "observation_layout", "dict")
        if env_layout not in ("dict", policy.layout):
            raise CheckpointError(
                f"{path} reads the {policy.layout!r} observation layout, the env gives "
                f"{env_layout!r}: expected the default 'dict' env (converted for it) or "
                f"observation_layout={policy.layout!r}"
            )
        return policy
    from agents.router import TransformerRouterPolicy

    router = TransformerRouterPolicy.load(path, budget=budget, online_step=online_step)
    check_policy_matches_env(router, env, path)
    return router


def _torch_format(path: Path) -> str | None:
    """The ``format`` entry of a tensors-only torch checkpoint (None if unreadable)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # the router loader reports what is wrong with it
    return ckpt.get("format") if isinstance(ckpt, dict) else None
