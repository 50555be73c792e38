"""Loading trained policies from files, so ``precision-gym evaluate --router PATH`` serves
every algorithm: Transformer-router checkpoints and Stable-Baselines3 models."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import RouterPolicy

__all__ = ["SB3_ALGOS", "SB3Policy", "load_policy_file"]

SB3_ALGOS = ("ppo", "a2c", "dqn")


class SB3Policy(RouterPolicy):
    """A Stable-Baselines3 model behind the router contract (charges router cost: it is a
    learned network run at every decision)."""

    charges_router_cost = True

    def __init__(self, model: Any, name: str = "sb3") -> None:
        super().__init__(int(model.action_space.n))
        self.model = model
        self.name = name

    def _predict_batch(self, obs: dict[str, np.ndarray], deterministic: bool) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(-1)


def _sb3_algo(path: Path) -> str:
    """Which SB3 algorithm saved ``path``: the saved hyper-parameters tell (PPO has a
    clip range, DQN an exploration rate, A2C neither)."""
    with zipfile.ZipFile(path) as zf:
        if "data" not in set(zf.namelist()):
            raise ValueError(f"{path} is a zip file but not a Stable-Baselines3 model (no 'data')")
        data = zf.read("data").decode(errors="replace")
    if '"exploration_rate"' in data:
        return "dqn"
    if '"clip_range"' in data:
        return "ppo"
    return "a2c"


def load_policy_file(
    path: str | Path, env: Any, budget: float | None = None, online_step: float | None = None
) -> RouterPolicy:
    """A policy from a file: ``.zip`` = Stable-Baselines3 model; otherwise a router checkpoint
    written by ``agents.router.TransformerRouter.save`` (``online_step``: online budget
    control, see ``agents.router.OnlineBudgetControl``)."""
    path = Path(path)
    if path.suffix == ".zip":
        if budget is not None or online_step is not None:
            raise ValueError(
                "--budget/--online-step apply to calibrated router checkpoints, not to SB3 models"
            )
        import stable_baselines3 as sb3

        algo = _sb3_algo(path)
        cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[algo]
        model = cls.load(str(path), device="cpu")
        return SB3Policy(model, name=f"sb3-{algo}:{path.stem}")
    from agents.router import load_router_policy

    return load_router_policy(path, budget=budget, online_step=online_step)
