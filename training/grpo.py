"""GRPO refinement of the router (paper Section 4.3): ``precision-gym train-grpo``.

For each task of a batch a *group* of ``G`` trajectories is sampled under the current
router (same task, different episode seeds) in a Gymnasium vector env; each trajectory's
return is the env's Eq. 8 return ``success - lambda * T``; the group-relative advantage
``(R - mean_group) / (std_group + eps)`` (zero when the group's returns are all equal) is
given to every routing decision of the trajectory; the router is updated with the clipped
importance-ratio objective over routing decisions (old log-probs from sampling time) and an
optional KL penalty to the frozen KL-ST reference router and an optional entropy bonus. No
value function is learned. ``advantage_norm`` chooses the paper's per-group std, mean-centring
only, or one std over the batch (:func:`compute_advantages`); ``lr_schedule`` decays the
learning rate (:func:`lr_at`).

The router is evaluated greedily on fixed tasks of a held-out split (the calibration split by
default) before training, every ``eval_every`` updates and after the last one
(``eval.jsonl``); with ``keep_best`` (default) the final router is the evaluated one chosen
by ``keep_best_rule`` (:mod:`training.selection`): by default a later router only when it
beats the start router on those episodes by a paired bootstrap bound, else the start router,
so a refinement that does not clearly help returns its start instead of a worse router.
A kept later router was chosen among several on those episodes, so ``confirm_episodes``
(default 32) tests it once more against the start on fresh episodes of the split and ships
the start unless the rule holds there too (``confirmation.json``).

``keep_best_per_budget`` (default) then applies the same rule at each calibrated budget K:
the start router, calibrated like the refined one (``start_router.pt``), against the refined
router at K on the confirmation episodes; ``budget_selection.json`` names the router to use
at each K (:func:`router_for_budget`). ``hold_sample_budget`` re-centres the sampling shift after every
update so that the router keeps sampling ``sample_budget`` of the batch's decisions high in
expectation (:func:`hold_bias`): the update can only re-rank states.

Everything is seeded from ``(seed, update index)``, so a resumed run (``--resume``) and a
fresh run with the same seed produce the same curve. Outputs in ``--out``:
``checkpoint.pt`` (atomic, every update), ``log.jsonl``, ``eval.jsonl``, ``best_router.pt``,
``tb/`` (TensorBoard), ``router.pt`` (final router with calibrated budget thresholds, evaluated by
``precision-gym evaluate --router OUT/router.pt --budget K``), and with the per-budget choice
``start_router.pt`` and ``budget_selection.json``.

``step_advantage_weight`` > 0 adds GiGPO's step-level advantage (verl-agent;
:func:`step_advantages`): decisions taken on the same env state within a group are compared by
their discounted return-to-go, which tells tiers apart where the episode advantage cannot
(two tiers on one state, e.g. high precision after the episode has derailed only adds cost).

Pure pieces with their own tests: :func:`group_advantages`, :func:`step_advantages`,
:func:`grpo_loss`, :func:`hold_bias`.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from precision_gym import DEFAULT_ENV_ID
from precision_gym.error import CheckpointError, ConfigError
from training.calibrate import calibrate_router  # issue 4's Eq. 7
from training.cli.common import add_config_parser, config_from_args, run_command
from training.selection import (
    budget_choices,
    confirm_plan,
    confirmation,
    confirmation_line,
    eval_plan,
    eval_row,
    keep_best_fields,
    select_best,
    validate_keep_best,
)
from training.trainer import Trainer, append_jsonl, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from agents.router import TransformerRouterPolicy

__all__ = [
    "ADVANTAGE_NORMS",
    "LR_SCHEDULES",
    "GRPOConfig",
    "GRPOTrainer",
    "ParkOnDone",
    "add_parser",
    "budget_bias",
    "compute_advantages",
    "discounted_to_go",
    "group_advantages",
    "grpo_loss",
    "hold_bias",
    "last_router",
    "lr_at",
    "router_for_budget",
    "step_advantages",
    "train_grpo",
]

CHECKPOINT = "checkpoint.pt"
FINAL = "router.pt"
BEST = "best_router.pt"
START = "start_router.pt"
BUDGET_SELECTION = "budget_selection.json"
CONFIRMATION = "confirmation.json"
LOG = "log.jsonl"
EVAL_LOG = "eval.jsonl"

#: advantage normalisations: the paper's per-group std, mean-centring only, or one std
#: over the whole batch (keeps the scale of small cost differences in all-success groups)
ADVANTAGE_NORMS = ("group-std", "none", "batch-std")
#: learning-rate schedules over ``max_updates`` (see :func:`lr_at`)
LR_SCHEDULES = ("constant", "linear", "cosine")


# ----------------------------------------------------------------------------- pure functions


def group_advantages(
    returns: Sequence[float] | np.ndarray, group_size: int, eps: float = 1e-6
) -> np.ndarray:
    """Group-relative advantages ``(R - mean) / (std + eps)`` per consecutive group.

    ``returns`` is laid out group by group (``len(returns) == n_groups * group_size``); the
    std is the population std (``ddof=0``). A group whose returns are all equal carries no
    learning signal and gets advantage exactly 0.
    """
    g = _groups(returns, group_size)
    mean = g.mean(axis=1, keepdims=True)
    std = g.std(axis=1, keepdims=True)
    adv = (g - mean) / (std + eps)
    flat = np.ptp(g, axis=1) <= 1e-12
    adv[flat] = 0.0
    return adv.reshape(-1)


def _groups(returns: Sequence[float] | np.ndarray, group_size: int) -> np.ndarray:
    """``returns`` as ``[n_groups, group_size]`` (validated)."""
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if group_size < 2:
        raise ConfigError(f"group_size must be >= 2, got {group_size}")
    if len(r) % group_size:
        raise ConfigError(
            f"len(returns) must be a multiple of group_size={group_size}, got {len(r)}"
        )
    return r.reshape(-1, group_size)


def compute_advantages(
    returns: Sequence[float] | np.ndarray,
    group_size: int,
    norm: str = "group-std",
    eps: float = 1e-6,
) -> np.ndarray:
    """Advantages of trajectories laid out group by group, under normalisation ``norm``.

    - ``group-std`` (the paper's): ``(R - mean_group) / (std_group + eps)``
      (:func:`group_advantages`). In a group whose members all succeed, the returns differ
      only by the cost term ``lambda * T`` (hundredths), and dividing by their tiny std
      blows those hundredths up to +-1: the router is pushed hard toward cheaper routing.
    - ``none``: ``R - mean_group``: the advantage keeps the reward's own scale, so a cost
      difference of 0.01 stays 0.01 next to a success difference of 1.
    - ``batch-std``: ``(R - mean_group) / (std_batch + eps)`` with one std over every
      centred return of the batch: a global step size that keeps the ratio between cost
      and success differences.

    A group whose returns are all equal gets advantage exactly 0 in every mode.
    """
    if norm not in ADVANTAGE_NORMS:
        raise ConfigError(f"advantage norm must be one of {list(ADVANTAGE_NORMS)}, got {norm!r}")
    if norm == "group-std":
        return group_advantages(returns, group_size, eps)
    g = _groups(returns, group_size)
    centred = g - g.mean(axis=1, keepdims=True)
    centred[np.ptp(g, axis=1) <= 1e-12] = 0.0
    if norm == "batch-std":
        centred = centred / (centred.std() + eps)
    return centred.reshape(-1)


def discounted_to_go(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` for each step of one trajectory."""
    out = np.zeros(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


def step_advantages(
    keys: Sequence[Sequence[str]],
    rewards: Sequence[Sequence[float]],
    group_size: int,
    gamma: float = 0.95,
    norm: str = "group-std",
    eps: float = 1e-6,
) -> list[np.ndarray]:
    """Step-level (anchor-state) advantages, as GiGPO's (verl-agent) within each group.

    ``keys[i][t]`` names the env state on which trajectory ``i`` took decision ``t`` (its
    *anchor*); ``rewards[i][t]`` is the reward of that step. Trajectories are laid out group
    by group. Within one group (one task), every decision taken on the same anchor state, in
    any trajectory and at any step, forms a *step group*; a decision's advantage is its
    discounted return-to-go minus the step group's mean (divided by the step group's std for
    ``norm="group-std"``; for ``"batch-std"``, by one std over the batch's non-zero step
    advantages, so that the decisions no step group holds do not shrink it).
    Decisions whose state no other decision shares, and step groups whose returns-to-go are
    all equal, get 0. Unlike the episode advantage, it tells two tiers chosen *on the same
    state* apart: e.g. once an episode has derailed, a high-precision call only adds cost.
    """
    if len(keys) != len(rewards):
        raise ConfigError(
            f"keys and rewards must hold the same trajectories, got {len(keys)} and {len(rewards)}"
        )
    _groups(np.zeros(len(keys)), group_size)  # validates the layout
    if norm not in ADVANTAGE_NORMS:
        raise ConfigError(f"advantage norm must be one of {list(ADVANTAGE_NORMS)}, got {norm!r}")
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"step gamma must be in (0, 1], got {gamma}")
    to_go = []
    for i, (k, r) in enumerate(zip(keys, rewards, strict=True)):
        if len(k) != len(r):
            raise ConfigError(
                f"trajectory {i}: expected one anchor key per reward, got {len(k)} keys and "
                f"{len(r)} rewards"
            )
        to_go.append(discounted_to_go(r, gamma))
    adv = [np.zeros(len(g)) for g in to_go]
    for start in range(0, len(keys), group_size):
        members: dict[str, list[tuple[int, int]]] = {}
        for i in range(start, start + group_size):
            for t, key in enumerate(keys[i]):
                members.setdefault(key, []).append((i, t))
        for idx in members.values():
            vals = np.array([to_go[i][t] for i, t in idx])
            if len(idx) < 2 or np.ptp(vals) <= 1e-12:
                continue
            centred = vals - vals.mean()
            if norm == "group-std":
                centred = centred / (vals.std() + eps)
            for (i, t), a in zip(idx, centred, strict=True):
                adv[i][t] = a
    if norm == "batch-std":
        flat = np.concatenate(adv) if adv else np.zeros(0)
        nz = flat[flat != 0.0]
        if len(nz):
            adv = [a / (nz.std() + eps) for a in adv]
    return adv


def hold_bias(logits: np.ndarray, budget: float) -> float:
    """The shift of the high tier's (index 0) logit under which the sampling policy's
    *expected* high-precision fraction over the ``N`` states is ``budget``:
    ``mean(sigmoid(d + b)) = budget`` with ``d = logit_0 - logsumexp(other logits)``, solved by
    bisection (the left side rises with ``b``; deterministic)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 2:
        raise ConfigError(
            f"hold_bias expects logits of shape (N >= 1, tiers >= 2), got {logits.shape}"
        )
    if not 0.0 < budget < 1.0:
        raise ConfigError(f"hold_bias expects a budget in (0, 1), got {budget}")
    rest = logits[:, 1:]
    top = rest.max(axis=1)
    d = logits[:, 0] - (top + np.log(np.exp(rest - top[:, None]).sum(axis=1)))
    lo, hi = -50.0 - d.max(), 50.0 - d.min()
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if np.mean(0.5 * (1.0 + np.tanh((d + mid) / 2.0))) < budget:  # sigmoid, no overflow
            lo = mid
        else:
            hi = mid
    return float((lo + hi) / 2.0)


def lr_at(update: int, max_updates: int, lr: float, schedule: str, final_ratio: float) -> float:
    """Learning rate of 1-based ``update`` of ``max_updates``: ``constant``, or decayed from
    ``lr`` to ``lr * final_ratio`` at the last update, ``linear``-ly or along a half
    ``cosine``. A pure function of the update index, so a resumed run uses the same rates."""
    if schedule not in LR_SCHEDULES:
        raise ConfigError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if schedule == "constant" or max_updates <= 1:
        return lr
    frac = min(max((update - 1) / (max_updates - 1), 0.0), 1.0)
    if schedule == "linear":
        scale = 1.0 - frac * (1.0 - final_ratio)
    else:
        scale = final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr * scale


def grpo_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped importance-ratio objective over routing decisions (+ optional KL penalty).

    ``loss = -mean(min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)) + kl_coef * mean(KL)``
    with ``rho = exp(logp_new - logp_old)`` and the per-decision KL estimate to the
    reference policy ``KL = exp(ref - new) - (ref - new) - 1`` (the unbiased, non-negative
    "k3" estimator used by GRPO). All inputs are ``[n_decisions]`` log-probs of the taken
    tiers; the mean is over decisions.

    Returns:
        ``(loss, stats)`` with ``stats``: ``policy_loss``, ``kl_ref``, ``clip_fraction``,
        ``approx_kl_old`` (``mean(old - new)``), ``ratio_mean``.
    """
    if logp_new.shape != logp_old.shape or logp_new.shape != advantages.shape:
        raise ValueError(
            "logp_new, logp_old and advantages must have the same shape, got "
            f"{tuple(logp_new.shape)}, {tuple(logp_old.shape)}, {tuple(advantages.shape)}"
        )
    if not 0.0 < clip_eps < 1.0:
        raise ConfigError(f"clip_eps must be in (0, 1), got {clip_eps}")
    ratio = torch.exp(logp_new - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    policy_loss = -torch.minimum(unclipped, clipped).mean()
    loss = policy_loss
    kl_value = 0.0
    if ref_logp is not None and kl_coef > 0.0:
        delta = ref_logp - logp_new
        kl = (torch.exp(delta) - delta - 1.0).mean()
        loss = loss + kl_coef * kl
        kl_value = float(kl.detach())
    with torch.no_grad():
        stats = {
            "policy_loss": float(policy_loss),
            "kl_ref": kl_value,
            "clip_fraction": float(((ratio - 1.0).abs() > clip_eps).float().mean()),
            "approx_kl_old": float((logp_old - logp_new).mean()),
            "ratio_mean": float(ratio.mean()),
        }
    return loss, stats


# ----------------------------------------------------------------------------- config


@dataclass
class GRPOConfig:
    """Configuration of a GRPO run (one help string per field; validated on creation)."""

    env_id: str = field(default=DEFAULT_ENV_ID, metadata={"help": "registered env id"})
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "JSON object of extra env kwargs (cost_weight is set by --cost-weight)"},
    )
    split: str = field(default="train", metadata={"help": "split the training tasks come from"})
    pool_size: int | None = field(
        default=None,
        metadata={
            "help": "restrict training to this many tasks spread evenly over the split (None = all)"
        },
    )
    init_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "KL-ST router checkpoint to start from (None = a freshly initialised "
            "router); a resumed run may name another path to the same router (a moved run)"
        },
    )
    sample_budget: float | None = field(
        default=None,
        metadata={
            "help": "sample around the init router's calibrated budget K: add "
            "log((1 - tau_K) / tau_K) to the high tier's logit (None = raw softmax)"
        },
    )
    hold_sample_budget: bool = field(
        default=False,
        metadata={
            "help": "after each update, re-centre that logit shift so that the sampling policy "
            "routes sample_budget of the batch's decisions to high precision in expectation "
            "(hold_bias): an update can then only re-rank states, not move the budget, which "
            "calibration at K removes anyway"
        },
    )
    hold_step: float = field(
        default=0.25,
        metadata={
            "help": "with hold_sample_budget: the shift moves this fraction of the way to the "
            "batch's solution per update, in (0, 1]; 1 jumps there, which oscillates (fewer "
            "high decisions derail more episodes, whose many states then ask for more)"
        },
    )
    tasks_per_batch: int = field(default=4, metadata={"help": "tasks per update (one group each)"})
    group_size: int = field(default=4, metadata={"help": "G: trajectories sampled per task"})
    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "trajectories per update; must equal tasks_per_batch * group_size (None = derived)"
        },
    )
    max_updates: int = field(default=50, metadata={"help": "stop after this many updates"})
    total_env_steps: int | None = field(
        default=None,
        metadata={
            "help": "stop once this many env steps (routing decisions) were sampled (None = no limit)"
        },
    )
    cost_weight: float = field(
        default=0.02, metadata={"help": "lambda of Eq. 8 (reward per second of episode time)"}
    )
    lr: float = field(default=0.0001, metadata={"help": "Adam learning rate"})
    epochs: int = field(default=2, metadata={"help": "optimisation passes over each batch"})
    minibatch_size: int = field(
        default=0, metadata={"help": "routing decisions per gradient step (0 = whole batch)"}
    )
    clip_eps: float = field(
        default=0.2, metadata={"help": "PPO-style ratio clip epsilon, in (0, 1)"}
    )
    kl_coef: float = field(
        default=0.0, metadata={"help": "weight of the KL penalty to the frozen reference router"}
    )
    advantage_norm: str = field(
        default="group-std",
        metadata={
            "help": "advantage normalisation: 'group-std' (the paper's (R - mean) / std per "
            "group), 'none' (R - group mean: keeps the cost term's scale) or 'batch-std' "
            "(centred per group, one std over the batch)"
        },
    )
    adv_eps: float = field(default=1e-06, metadata={"help": "eps in (R - mean) / (std + eps)"})
    step_advantage_weight: float = field(
        default=0.0,
        metadata={
            "help": "omega: add omega x the step-level advantage (GiGPO, verl-agent) to the "
            "episode advantage: decisions taken on the same env state (same last action and "
            "observation) within a group are compared by their discounted return-to-go "
            "(0 = episode advantage only, the paper's GRPO)"
        },
    )
    step_gamma: float = field(
        default=0.95,
        metadata={"help": "discount of the return-to-go in step-level advantages, in (0, 1]"},
    )
    entropy_coef: float = field(
        default=0.0,
        metadata={"help": "weight of the entropy bonus (mean routing entropy) in the loss"},
    )
    lr_schedule: str = field(
        default="constant",
        metadata={"help": "learning-rate schedule over max_updates: constant, linear or cosine"},
    )
    lr_final_ratio: float = field(
        default=0.1,
        metadata={"help": "final lr as a fraction of lr, for the linear / cosine schedules"},
    )
    eval_every: int = field(
        default=10,
        metadata={
            "help": "evaluate the router on the evaluation split before training, every N "
            "updates and after the last (0 = never)"
        },
    )
    eval_split: str | None = field(
        default=None,
        metadata={"help": "evaluation split during training (None = the calibration split)"},
    )
    eval_episodes: int
    keep_best: bool
    keep_best_rule: str
    keep_best_level: float
    confirm_episodes: int
    eval_episodes, keep_best, keep_best_rule, keep_best_level, confirm_episodes = keep_best_fields(
        what="router",
        shipped="the final router",
        needs="eval_every",
        otherwise="the start is shipped; the per-budget choice uses the same episodes (0 = no "
        "confirmation; the per-budget choice then reuses the keep-best episodes)",
    )
    keep_best_per_budget: bool = field(
        default=True,
        metadata={
            "help": "after calibration, at each budget K: ship the refined router only where "
            "keep_best_rule prefers it to the start router calibrated at K on the evaluation "
            "episodes, else the start router (start_router.pt; the choice in "
            "budget_selection.json, read by router_for_budget); needs init_checkpoint and "
            "calibration"
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip (0 = none)"})
    d_model: int = field(default=64, metadata={"help": "router width when training from scratch"})
    n_layers: int = field(default=2, metadata={"help": "router depth when training from scratch"})
    n_heads: int = field(
        default=4, metadata={"help": "router attention heads when training from scratch"}
    )
    vector_env: str = field(
        default="sync", metadata={"help": "'sync' or 'async' Gymnasium vector env for a group"}
    )
    workers: int = field(
        default=0,
        metadata={
            "help": "0: a group is a Gymnasium vector env (vector_env); N >= 1: the batched env "
            "(one generate call per tier per step for the whole group) with the group's task "
            "engines in N worker processes; the same records whatever N"
        },
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "run the group's task engines as `workers` Ray actors on this cluster "
            "('auto', 'ray://host:10001', 'local'; the ray extra) instead of local processes; "
            "the same curve"
        },
    )
    budgets: tuple[float, ...] = field(
        default=(0.2, 0.4, 0.7),
        metadata={"help": "high-precision budgets K calibrated after training (Eq. 7)"},
    )
    calibration_split: str | None = field(
        default=None,
        metadata={
            "help": "calibration pool split, disjoint from train/test (None = valid_train, or eval)"
        },
    )
    calibration_episodes: int = field(
        default=20, metadata={"help": "calibration episodes (0 = skip calibration)"}
    )
    calibration_refine_iters: int = field(
        default=5,
        metadata={
            "help": "fixed-point calibration: pool runs per budget at the candidate tau_K "
            "(0 = the paper's one-pass Eq. 7)"
        },
    )
    calibration_seed: int | None = field(
        default=None,
        metadata={
            "help": "seed of the calibration episodes (None = seed); give the start router's "
            "calibration seed so that, at one K, a kept start router gets its exact thresholds"
        },
    )
    seed: int = field(
        default=0, metadata={"help": "seed of task choice, episode seeds, sampling and init"}
    )
    out: str = field(default="runs/grpo", metadata={"help": "output folder"})
    resume: bool = field(default=False, metadata={"help": "continue from OUT/checkpoint.pt"})
    tensorboard: bool = field(
        default=True, metadata={"help": "write TensorBoard scalars to OUT/tb"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(
                f"group_size must be >= 2 (a group-relative advantage needs a group), "
                f"got {self.group_size}"
            )
        if self.tasks_per_batch < 1:
            raise ConfigError(f"tasks_per_batch must be >= 1, got {self.tasks_per_batch}")
        expected = self.tasks_per_batch * self.group_size
        if self.batch_size is None:
            self.batch_size = expected
        elif self.batch_size != expected:
            raise ConfigError(
                f"batch_size must split into groups: expected tasks_per_batch * group_size = "
                f"{self.tasks_per_batch} * {self.group_size} = {expected}, got {self.batch_size}"
            )
        if self.cost_weight < 0:
            raise ConfigError(f"cost_weight (lambda) must be >= 0, got {self.cost_weight}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 < self.clip_eps < 1.0:
            raise ConfigError(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.kl_coef < 0:
            raise ConfigError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.adv_eps <= 0:
            raise ConfigError(f"adv_eps must be > 0, got {self.adv_eps}")
        if not self.step_advantage_weight >= 0.0:
            raise ConfigError(
                f"step_advantage_weight must be >= 0, got {self.step_advantage_weight}"
            )
        if not 0.0 < self.step_gamma <= 1.0:
            raise ConfigError(f"step_gamma must be in (0, 1], got {self.step_gamma}")
        if self.advantage_norm not in ADVANTAGE_NORMS:
            raise ConfigError(
                f"advantage_norm must be one of {list(ADVANTAGE_NORMS)}, "
                f"got {self.advantage_norm!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if not 0.0 <= self.lr_final_ratio <= 1.0:
            raise ConfigError(f"lr_final_ratio must be in [0, 1], got {self.lr_final_ratio}")
        if self.entropy_coef < 0:
            raise ConfigError(f"entropy_coef must be >= 0, got {self.entropy_coef}")
        if self.eval_every < 0 or self.eval_episodes < 1:
            raise ConfigError(
                "eval_every must be >= 0 and eval_episodes >= 1, got "
                f"{self.eval_every} and {self.eval_episodes}"
            )
        validate_keep_best(self.keep_best_rule, self.keep_best_level, self.confirm_episodes)
        for name in ("max_updates", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        counts = (
            self.minibatch_size,
            self.max_grad_norm,
            self.calibration_episodes,
            self.calibration_refine_iters,
        )
        if min(counts) < 0:
            raise ConfigError(
                "minibatch_size, max_grad_norm, calibration_episodes and "
                f"calibration_refine_iters must be >= 0, got {', '.join(map(str, counts))}"
            )
        if self.total_env_steps is not None and self.total_env_steps < 1:
            raise ConfigError(f"total_env_steps must be >= 1 or None, got {self.total_env_steps}")
        if self.pool_size is not None and self.pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1 or None, got {self.pool_size}")
        if self.sample_budget is not None and not 0.0 < self.sample_budget < 1.0:
            raise ConfigError(f"sample_budget must be in (0, 1) or None, got {self.sample_budget}")
        if self.hold_sample_budget and self.sample_budget is None:
            raise ConfigError("hold_sample_budget needs sample_budget (the K to hold), got None")
        if not 0.0 < self.hold_step <= 1.0:
            raise ConfigError(f"hold_step must be in (0, 1], got {self.hold_step}")
        if isinstance(self.workers, bool) or not 0 <= self.workers <= self.group_size:
            raise ConfigError(
                f"workers must be in [0, group_size={self.group_size}], got {self.workers!r}"
            )
        if self.ray_address is not None and self.workers < 1:
            raise ConfigError(
                f"ray_address={self.ray_address!r} runs the task engines on Ray actors: "
                f"expected workers >= 1 (the number of actors), got {self.workers}"
            )
        if self.vector_env not in ("sync", "async"):
            raise ConfigError(f"vector_env must be 'sync' or 'async', got {self.vector_env!r}")
        bad = [k for k in self.budgets if not 0.0 < k < 1.0]
        if bad:
            raise ConfigError(f"budgets must lie in (0, 1), got {list(self.budgets)}")
        self.budgets = tuple(float(k) for k in self.budgets)
        if "cost_weight" in self.env_kwargs:
            raise ConfigError(
                "set lambda with cost_weight / --cost-weight, not env_kwargs['cost_weight'] "
                f"(got env_kwargs={self.env_kwargs})"
            )

    def env_make_kwargs(self) -> dict[str, Any]:
        return {**self.env_kwargs, "cost_weight": self.cost_weight}

    #: fields that may differ between a run and its resumption
    RESUMABLE_CHANGES = (
        "max_updates",
        "total_env_steps",
        "resume",
        "progress",
        "tensorboard",
        "workers",
        "ray_address",
        "calibration_seed",  # used only by the calibration after training
        "keep_best_per_budget",  # used only after training
        "confirm_episodes",  # used only after training
        "out",  # a moved run folder resumes where it now is
    )


# ----------------------------------------------------------------------------- vector env


class ParkOnDone(gym.Wrapper):
    """Gymnasium wrapper that *parks* a sub-env once its episode ended.

    Vector envs step every sub-env in lock-step and autoreset finished ones (to a random
    task of the default split). A GRPO group only needs each member's one episode, so after
    the end an option-less ``reset()`` (the autoreset) returns the final observation without
    starting an episode, and ``step()`` returns it again with reward 0 and
    ``terminated=True``; neither touches the LLM tiers. An explicit ``reset(options=...)``
    or ``reset(seed=...)`` starts a real episode.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._final: tuple[Any, dict[str, Any]] | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if options is None and seed is None and self._final is not None:
            return self._final[0], {**self._final[1], "parked": True}
        self._final = None
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._final is not None:
            return self._final[0], 0.0, True, False, {**self._final[1], "parked": True}
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self._final = (obs, info)
        return obs, float(reward), terminated, truncated, info


def _make_env_fn(env_id: str, kwargs: dict[str, Any]) -> Any:
    def thunk() -> Any:
        import precision_gym  # noqa: F401  (registers the ids in a subprocess)

        return ParkOnDone(gym.make(env_id, **kwargs))

    return thunk


def make_group_env(cfg: GRPOConfig, encoder: Any = None) -> Any:
    """A vector env of ``group_size`` parked sub-envs (sync ones share one encoder and its
    cache: ``encoder``, or one loaded here)."""
    kwargs = cfg.env_make_kwargs()
    if cfg.workers >= 1:  # the batched env: finished members are parked, as ParkOnDone does
        if encoder is not None and kwargs.get("encoder") is None:
            kwargs["encoder"] = encoder
        return gym.make_vec(
            cfg.env_id,
            num_envs=cfg.group_size,
            vectorization_mode="vector_entry_point",
            workers=cfg.workers,
            park_finished=True,
            ray_address=cfg.ray_address,
            **kwargs,
        )
    if cfg.vector_env == "sync":
        from precision_gym.embedding import SentenceEncoder

        enc = kwargs.get("encoder")
        if encoder is not None and enc is None:
            kwargs["encoder"] = encoder
        elif not isinstance(enc, SentenceEncoder):
            kwargs["encoder"] = SentenceEncoder(enc) if enc else SentenceEncoder()
        return gym.vector.SyncVectorEnv([_make_env_fn(cfg.env_id, kwargs)] * cfg.group_size)
    return gym.vector.AsyncVectorEnv([_make_env_fn(cfg.env_id, kwargs)] * cfg.group_size)


# ----------------------------------------------------------------------------- rollouts


@dataclass
class Batch:
    """Routing decisions of one update, flattened over the batch's trajectories."""

    embeddings: np.ndarray  # [N, L, d] float32
    mask: np.ndarray  # [N, L]
    actions: np.ndarray  # [N]
    logp_old: np.ndarray  # [N]
    ref_logp: np.ndarray  # [N]
    advantages: np.ndarray  # [N]
    returns: np.ndarray  # [B] per trajectory, group by group
    won: np.ndarray  # [B]
    episode_time_s: np.ndarray  # [B]
    decisions: np.ndarray  # [B]
    high_decisions: np.ndarray  # [B]
    task_indices: list[int]


def _seed_int(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class GRPOTrainer(Trainer):
    """Runs GRPO updates on ``cfg``; see the module docstring. A step of the
    :class:`~training.trainer.Trainer` skeleton is one update (sample a batch of groups,
    optimise); the checkpoint holds the router, the reference router and the optimizer."""

    checkpoint_file = CHECKPOINT
    checkpoint_format = "precision-gym/grpo-checkpoint/v2"
    checkpoint_what = "GRPO checkpoint"
    artefacts = (CHECKPOINT, FINAL)
    overwrite_flags = "--resume"
    resumable_fields = GRPOConfig.RESUMABLE_CHANGES
    log_file = LOG
    tensorboard_prefix = "grpo"
    tensorboard_exclude = ("update", "env_steps")
    progress_desc = "GRPO"
    progress_unit = "upd"

    def __init__(self, cfg: GRPOConfig) -> None:
        super().__init__(
            cfg, cfg.out, resume=cfg.resume, progress=cfg.progress, tensorboard=cfg.tensorboard
        )
        import precision_gym  # noqa: F401

        self.cfg = cfg
        probe = gym.make(cfg.env_id, **cfg.env_make_kwargs())
        self.unwrapped = probe.unwrapped
        self.n_tiers = int(probe.action_space.n)
        n_tasks = self.unwrapped.task.num_tasks(cfg.split)
        from training.evaluation import select_tasks

        self.pool = select_tasks(n_tasks, cfg.pool_size)
        self._probe = probe
        torch.manual_seed(cfg.seed)
        from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

        if cfg.init_checkpoint:
            from training.policies import check_policy_matches_env

            init = TransformerRouterPolicy.load(cfg.init_checkpoint)
            check_policy_matches_env(init, probe, cfg.init_checkpoint)  # tiers, task, dim
            self.model, self.meta = init.model, dict(init.metadata)
        else:
            self.model = TransformerRouter(
                RouterConfig(
                    embed_dim=self.unwrapped.embedding_dim,
                    max_len=self.unwrapped.max_history,
                    d_model=cfg.d_model,
                    n_layers=cfg.n_layers,
                    n_heads=cfg.n_heads,
                    dropout=0.0,
                    n_tiers=self.n_tiers,
                )
            )
            self.meta = {}
        # what the router is for: evaluate refuses it on another task or tier set
        self.meta.update(task=self.unwrapped.task.name, tier_names=list(self.unwrapped.tier_names))
        self.high_bias = 0.0
        if cfg.sample_budget is not None:
            self.high_bias = budget_bias(cfg.init_checkpoint, cfg.sample_budget)
        self.start_bias = self.high_bias  # the start router's operating point (held: moves)
        self.model.eval()  # no dropout: ratio == 1 on the first pass, reproducible
        self.ref_model = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.env_steps = 0
        self.vec: Any = None
        self.evals: list[dict[str, Any]] = []  # evaluation rows (update 0 = the start router)
        self.best: dict[str, Any] | None = None  # the best evaluation row so far

    # -- sampling ---------------------------------------------------------------------------
    def _logits(
        self,
        model: torch.nn.Module,
        emb: np.ndarray,
        mask: np.ndarray,
        high_bias: float | None = None,
    ) -> torch.Tensor:
        """``model``'s logits with the high tier shifted by ``high_bias`` (default: the
        sampling operating point now)."""
        emb_t = torch.as_tensor(emb, dtype=torch.float32)
        mask_t = torch.as_tensor(mask, dtype=torch.float32)
        logits = model(emb_t.reshape(*mask_t.shape, -1), mask_t)
        bias = self.high_bias if high_bias is None else high_bias
        if bias:  # the sampling operating point (sample_budget)
            logits = logits + torch.tensor([bias] + [0.0] * (logits.shape[1] - 1))
        return logits

    def sample_group(
        self, task_index: int, seeds: list[int], gen: torch.Generator
    ) -> list[dict[str, Any]]:
        """``G`` trajectories of the current router on one task (a vector env of size G)."""
        if self.vec is None:
            self.vec = make_group_env(self.cfg, encoder=self.unwrapped.encoder)
        g = self.cfg.group_size
        obs, _ = self.vec.reset(
            seed=seeds,
            options={"split": self.cfg.split, "task_index": task_index, "charge_router": True},
        )
        trajs = [
            {"emb": [], "mask": [], "act": [], "logp": [], "ref": [], "ret": 0.0, "info": None,
             "key": [], "rew": []}
            for _ in range(g)
        ]  # fmt: skip
        state = ["reset"] * g  # each member's anchor state: last action and observation
        active = np.ones(g, dtype=bool)
        while active.any():
            emb = np.asarray(obs["embeddings"], dtype=np.float32)
            mask = np.asarray(obs["mask"], dtype=np.float32)
            with torch.no_grad():
                logp_all = torch.log_softmax(self._logits(self.model, emb, mask), dim=-1)
                ref_all = torch.log_softmax(self._logits(self.ref_model, emb, mask), dim=-1)
                actions = torch.multinomial(logp_all.exp(), 1, generator=gen).squeeze(1)
            for i in np.flatnonzero(active):
                a = int(actions[i])
                t = trajs[i]
                t["emb"].append(emb[i].reshape(mask.shape[1], -1).astype(np.float16))
                t["mask"].append(mask[i])
                t["act"].append(a)
                t["logp"].append(float(logp_all[i, a]))
                t["ref"].append(float(ref_all[i, a]))
                t["key"].append(state[i])
            obs, rewards, terms, truncs, infos = self.vec.step(actions.numpy().astype(np.int64))
            for i in np.flatnonzero(active):
                trajs[i]["ret"] += float(rewards[i])
                trajs[i]["rew"].append(float(rewards[i]))
                state[i] = f"{infos['action'][i]}\x1f{infos['observation'][i]}"
                if terms[i] or truncs[i]:
                    active[i] = False
                    trajs[i]["info"] = {
                        k: infos[k][i]
                        for k in ("won", "episode_time_s", "decisions", "hp_fraction")
                    }
        self.env_steps += sum(len(t["act"]) for t in trajs)
        return trajs

    def sample_batch(self, update: int) -> Batch:
        """The update's tasks x groups, seeded from ``(seed, update)``."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, update])
        replace = cfg.tasks_per_batch > len(self.pool)
        tasks = [int(t) for t in rng.choice(self.pool, cfg.tasks_per_batch, replace=replace)]
        gen = torch.Generator().manual_seed(_seed_int(rng))
        trajs: list[dict[str, Any]] = []
        for task in tasks:
            seeds = [_seed_int(rng) for _ in range(cfg.group_size)]
            trajs.extend(self.sample_group(task, seeds, gen))
        returns = np.array([t["ret"] for t in trajs])
        adv = compute_advantages(returns, cfg.group_size, cfg.advantage_norm, cfg.adv_eps)
        lengths = [len(t["act"]) for t in trajs]
        per_step = np.repeat(adv, lengths)
        if cfg.step_advantage_weight > 0.0:  # GiGPO: + omega x the anchor-state advantage
            step = step_advantages(
                [t["key"] for t in trajs], [t["rew"] for t in trajs], cfg.group_size,
                cfg.step_gamma, cfg.advantage_norm, cfg.adv_eps,
            )  # fmt: skip
            per_step = per_step + cfg.step_advantage_weight * np.concatenate(step)
        decisions = np.array([int(t["info"]["decisions"]) for t in trajs])
        return Batch(
            embeddings=np.concatenate([np.stack(t["emb"]) for t in trajs]),
            mask=np.concatenate([np.stack(t["mask"]) for t in trajs]),
            actions=np.concatenate([t["act"] for t in trajs]).astype(np.int64),
            logp_old=np.concatenate([t["logp"] for t in trajs]).astype(np.float32),
            ref_logp=np.concatenate([t["ref"] for t in trajs]).astype(np.float32),
            advantages=per_step.astype(np.float32),
            returns=returns,
            won=np.array([bool(t["info"]["won"]) for t in trajs]),
            episode_time_s=np.array([float(t["info"]["episode_time_s"]) for t in trajs]),
            decisions=decisions,
            high_decisions=np.array([sum(a == 0 for a in t["act"]) for t in trajs]),
            task_indices=tasks,
        )

    # -- optimisation -----------------------------------------------------------------------
    def optimize(self, batch: Batch, update: int) -> dict[str, float]:
        """``epochs`` passes of clipped-ratio steps over the batch's routing decisions."""
        cfg = self.cfg
        n = len(batch.actions)
        rng = np.random.default_rng([cfg.seed, update, 1])
        mb = cfg.minibatch_size or n
        stats: list[dict[str, float]] = []
        if not np.any(batch.advantages) and cfg.kl_coef == 0.0 and cfg.entropy_coef == 0.0:
            return {"skipped": 1.0}  # every group flat: no gradient signal
        lr = lr_at(update, cfg.max_updates, cfg.lr, cfg.lr_schedule, cfg.lr_final_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for _ in range(cfg.epochs):
            perm = rng.permutation(n)
            for start in range(0, n, mb):
                idx = perm[start : start + mb]
                logits = self._logits(
                    self.model, batch.embeddings[idx].astype(np.float32), batch.mask[idx]
                )
                logp = torch.log_softmax(logits, dim=-1)
                act = torch.as_tensor(batch.actions[idx])
                logp_new = logp.gather(1, act[:, None]).squeeze(1)
                loss, st = grpo_loss(
                    logp_new,
                    torch.as_tensor(batch.logp_old[idx]),
                    torch.as_tensor(batch.advantages[idx]),
                    cfg.clip_eps,
                    ref_logp=torch.as_tensor(batch.ref_logp[idx]),
                    kl_coef=cfg.kl_coef,
                )
                entropy = -(logp.exp() * logp).sum(-1).mean()
                if cfg.entropy_coef > 0.0:
                    loss = loss - cfg.entropy_coef * entropy
                self.optimizer.zero_grad()
                loss.backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                stats.append(
                    {**st, "loss": float(loss.detach()), "entropy": float(entropy.detach())}
                )
        means = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
        return means | {"skipped": 0.0, "lr": lr}

    # -- evaluation during training ---------------------------------------------------------
    def eval_split(self) -> str:
        cfg = self.cfg
        return cfg.eval_split or cfg.calibration_split or _default_calibration_split(self.unwrapped)

    def evaluate_router(self) -> dict[str, Any]:
        """Utility (mean Eq. 8 return), success and HP of the current router acting greedily
        at its sampling operating point, on fixed tasks and seeds of the evaluation split."""
        from training.evaluation import evaluate

        split = self.eval_split()
        tasks, seeds = eval_plan(
            self.unwrapped.task.num_tasks(split), self.cfg.eval_episodes, self.cfg.seed
        )
        result = evaluate(
            _GreedyRouter(self),
            self._probe,
            split=split,
            task_indices=tasks,
            seeds=seeds,
            progress=False,
        )
        return {
            "update": self.update,
            "env_steps": self.env_steps,
            "high_bias": self.high_bias,
        } | eval_row(result.records, split)

    def _is_eval_update(self, update: int) -> bool:
        every = self.cfg.eval_every
        return bool(every) and (update == 0 or update % every == 0 or self.is_done())

    def _eval_and_log(self) -> None:
        """Evaluate now; keep ``best_router.pt`` (written before the row is logged)."""
        row = self.evaluate_router()
        rows = [*self.evals, row]
        choice = self._select(rows) if self.cfg.keep_best else None
        if choice == len(rows) - 1:
            _policy(self.model, self.meta).save(self.out / BEST)
            self.best = row
        elif choice == 0 and self.best is not rows[0]:  # 'final': the start is back
            _policy(self.ref_model, self.meta).save(self.out / BEST)
            self.best = rows[0]
        row["best_update"] = self.best["update"] if self.best is not None else None
        self.evals.append(row)
        append_jsonl(row, self.out / EVAL_LOG)
        if self.writer is not None:
            for k in ("utility", "success_rate", "hp_fraction"):
                self.writer.add_scalar(f"eval/{k}", row[k], self.env_steps)

    def _restore_evals(self) -> None:
        path = self.out / EVAL_LOG
        self.evals = [r for r in read_jsonl(path) if r["update"] <= self.update]
        write_jsonl(self.evals, path)
        self.best = None
        if self.cfg.keep_best and self.evals and not (self.out / BEST).exists():
            raise CheckpointError(
                f"--resume: {path} lists evaluations but {self.out / BEST} is missing"
            )
        if self.cfg.keep_best and self.evals:
            self.best = self.evals[self._select(self.evals)]

    def _select(self, rows: list[dict[str, Any]]) -> int:
        return select_best(rows, rule=self.cfg.keep_best_rule, level=self.cfg.keep_best_level)

    # -- the Trainer skeleton -----------------------------------------------------------------
    @property
    def update(self) -> int:
        """Updates done (the skeleton's ``steps_done``)."""
        return self.steps_done

    @property
    def total_steps(self) -> int:
        return self.cfg.max_updates

    def should_stop(self) -> bool:
        limit = self.cfg.total_env_steps
        return limit is not None and self.env_steps >= limit

    def on_train_start(self) -> None:
        """Restore (resume) or start the evaluation log; evaluate the start router (or an
        evaluation a crash cut off)."""
        if self.resume:
            self._restore_evals()
        else:
            write_jsonl([], self.out / EVAL_LOG)
        evaluated = {r["update"] for r in self.evals}
        if self._is_eval_update(self.update) and self.update not in evaluated:
            self._eval_and_log()

    def train_step(self, step: int) -> dict[str, Any]:
        """Update ``step + 1``: sample the batch of groups, optimise, return the log row."""
        update = step + 1
        t_upd = time.perf_counter()
        batch = self.sample_batch(update)
        stats = self.optimize(batch, update)
        if self.cfg.hold_sample_budget:  # the next batch is sampled at K again
            with torch.no_grad():
                emb = torch.as_tensor(batch.embeddings, dtype=torch.float32)
                mask = torch.as_tensor(batch.mask, dtype=torch.float32)
                raw = self.model(emb, mask).numpy()
            target = hold_bias(raw, float(self.cfg.sample_budget))
            self.high_bias += self.cfg.hold_step * (target - self.high_bias)
        return self._row(batch, stats, time.perf_counter() - t_upd, update)

    def after_step(self, row: dict[str, Any]) -> None:
        if self._is_eval_update(self.update):
            self._eval_and_log()

    def progress_postfix(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "steps": self.env_steps,
            "ret": f"{row['mean_return']:.3f}",
            "succ": f"{row['success_rate']:.2f}",
            "hp": f"{row['hp_fraction']:.2f}",
        }

    def tensorboard_step(self) -> int:
        return self.env_steps

    def resume_differences(
        self, diff: dict[str, tuple[Any, Any]], state: dict[str, Any]
    ) -> dict[str, tuple[Any, Any]]:
        """A moved ``init_checkpoint`` (the run folder was moved or copied with its KL-ST
        router) resumes when the file now named holds the checkpoint's reference router, the
        start of the run, weight for weight."""
        if "init_checkpoint" not in diff or not diff["init_checkpoint"][0]:
            return diff
        if not self.cfg.init_checkpoint or "ref_router" not in state:
            return diff
        ref = _model_from_state(state["ref_router"]).state_dict()
        now = self.ref_model.state_dict()  # built from the file now named
        same = ref.keys() == now.keys() and all(
            ref[k].shape == now[k].shape and torch.equal(ref[k], now[k]) for k in ref
        )
        return {k: v for k, v in diff.items() if k != "init_checkpoint"} if same else diff

    def state_dict(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "router": _policy(self.model, self.meta).state(),
            "ref_router": _policy(self.ref_model, self.meta).state(),
            "optimizer": self.optimizer.state_dict(),
            "high_bias": self.high_bias,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model = _model_from_state(state["router"]).eval()
        self.ref_model = _model_from_state(state["ref_router"]).eval()
        self.ref_model.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.high_bias = float(state.get("high_bias", self.high_bias))  # held: moves per update

    def _row(
        self, batch: Batch, stats: dict[str, float], wall_s: float, update: int
    ) -> dict[str, Any]:
        g = batch.returns.reshape(-1, self.cfg.group_size)
        decisions = int(batch.decisions.sum())
        return {
            "update": update,
            "env_steps": self.env_steps,
            "episodes": len(batch.returns),
            "mean_return": float(batch.returns.mean()),
            "success_rate": float(batch.won.mean()),
            "mean_episode_time_s": float(batch.episode_time_s.mean()),
            "hp_fraction": float(batch.high_decisions.sum() / decisions) if decisions else 0.0,
            "flat_groups": float(np.mean(np.ptp(g, axis=1) <= 1e-12)),
            "high_bias": self.high_bias,
            "tasks": batch.task_indices,
            "wall_s": wall_s,
            **stats,
        }

    def close(self) -> None:
        if self.vec is not None:
            self.vec.close()
            self.vec = None
        self._probe.close()


# ----------------------------------------------------------------------------- utilities


class _GreedyRouter:
    """A trainer's router at its sampling operating point, acting greedily: the policy that
    :meth:`GRPOTrainer.evaluate_router` scores (``predict`` contract of ``agents``)."""

    name = "grpo-eval"
    charge_router = True

    def __init__(
        self,
        trainer: GRPOTrainer,
        model: torch.nn.Module | None = None,
        high_bias: float | None = None,
    ) -> None:
        self.trainer = trainer
        self.model = model  # None: the trainer's current router
        self.high_bias = high_bias  # None: the trainer's operating point now

    def predict(
        self,
        obs: dict[str, np.ndarray],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        emb = np.asarray(obs["embeddings"], dtype=np.float32)[None]
        mask = np.asarray(obs["mask"], dtype=np.float32)[None]
        with torch.no_grad():
            model = self.trainer.model if self.model is None else self.model
            logits = self.trainer._logits(model, emb, mask, self.high_bias)
        return np.asarray(int(logits.argmax(-1)[0])), state


def _policy(model: torch.nn.Module, meta: dict[str, Any]) -> Any:
    from agents.router import TransformerRouterPolicy

    policy = TransformerRouterPolicy(model, metadata=meta)
    model.eval()
    return policy


def _model_from_state(state: dict[str, Any]) -> torch.nn.Module:
    from agents.router import RouterConfig, TransformerRouter

    model = TransformerRouter(RouterConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return model


def budget_bias(init_checkpoint: str | None, budget: float) -> float:
    """``log((1 - tau_K) / tau_K)``: with it added to the high tier's logit, the policy's
    ``p(high)`` crosses 1/2 exactly where the init router's calibrated ``tau_K`` routes to
    high precision, so GRPO samples around the deployed operating point instead of the
    raw (class-weighted, usually low) KL-ST softmax."""
    from agents.router import TransformerRouterPolicy

    if init_checkpoint is None:
        raise ConfigError("sample_budget needs init_checkpoint (a calibrated router), got None")
    policy = TransformerRouterPolicy.load(init_checkpoint)
    policy.set_budget(budget)  # CheckpointError naming the calibrated budgets if missing
    tau = min(max(policy.threshold, 1e-6), 1 - 1e-6)
    return float(math.log((1.0 - tau) / tau))


def last_router(run_dir: str | Path) -> TransformerRouterPolicy:
    """The router a ``train-grpo`` run's training ended with (``OUT/checkpoint.pt``), routing
    greedily at its last sampling operating point, whichever router the run shipped.

    With ``sample_budget`` the trainer samples from the router's logits with the high tier
    shifted by ``b`` (held near K by ``hold_sample_budget``); greedy at that shift is the
    threshold rule at ``tau = sigmoid(-b)`` on ``p(high)`` (exact for two tiers; with more,
    the threshold rule at the same ``p(high)`` crossing). The returned
    ``agents.router.TransformerRouterPolicy`` has that ``threshold``, no calibrated budgets,
    and ``metadata["operating_point"]`` (``high_bias``, ``tau``, ``sample_budget``, ``seed``,
    ``update``). The checkpoint is read tensors-only; a missing or foreign file raises
    :class:`~precision_gym.error.CheckpointError` naming the path."""
    from agents.router import TransformerRouterPolicy
    from precision_gym.io import load_torch_checkpoint

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"expected a train-grpo run folder holding {CHECKPOINT}, got {Path(run_dir)} "
            f"(no file {path})"
        )
    state = load_torch_checkpoint(path, GRPOTrainer.checkpoint_format, "GRPO checkpoint")
    router = state["router"]
    model = _model_from_state(router)
    bias = float(state.get("high_bias", 0.0))
    tau = 1.0 / (1.0 + math.exp(bias))  # sigmoid(-b): shifted logits tie where p(high) = tau
    cfg = state.get("config", {})
    meta = dict(router.get("metadata", {}))
    meta["operating_point"] = {
        "high_bias": bias,
        "tau": tau,
        "sample_budget": cfg.get("sample_budget"),
        "seed": cfg.get("seed"),
        "update": int(state.get("steps_done", 0)),
        "run": str(run_dir),
    }
    model.eval()
    return TransformerRouterPolicy(model, metadata=meta, threshold=tau)


def train_grpo(cfg: GRPOConfig) -> dict[str, Any]:
    """Train, save ``OUT/router.pt`` and calibrate its budgets (then, with
    ``keep_best_per_budget``, choose refined or start router at each K); returns a summary."""
    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg)  # refuses a folder with a trained run before any work
    try:
        rows = trainer.train()
        final = Path(cfg.out) / FINAL
        meta = {**trainer.meta, "trained_with": "GRPO", "grpo_config": asdict(cfg)}
        model = trainer.model
        if trainer.best is not None:  # keep_best: the best evaluated router, start included
            from agents.router import TransformerRouterPolicy

            model = TransformerRouterPolicy.load(Path(cfg.out) / BEST).model
            meta["grpo_selected"] = {
                "update": trainer.best["update"],
                "utility": trainer.best["utility"],
                "start_utility": trainer.evals[0]["utility"] if trainer.evals else None,
                "last_utility": trainer.evals[-1]["utility"] if trainer.evals else None,
                "split": trainer.best["split"],
                "rule": cfg.keep_best_rule,
            }
        for stale in (BUDGET_SELECTION, START, CONFIRMATION):  # a resumed run's: void
            (Path(cfg.out) / stale).unlink(missing_ok=True)
        kept_start = trainer.best is not None and trainer.best["update"] == 0
        confirmed = None
        if trainer.best is not None and not kept_start and cfg.confirm_episodes:
            confirmed = _confirm(cfg, trainer, model)
            meta["grpo_selected"]["confirmed"] = confirmed["router"] == "refined"
            if confirmed["router"] == "start":  # the kept router did not hold up
                model, kept_start = copy.deepcopy(trainer.ref_model), True
        _policy(model, meta).save(final)
        thresholds: dict[str, float] = {}
        per_budget = None
        if cfg.calibration_episodes:
            thresholds = _calibrate(cfg, trainer, final, "calibration")
            if cfg.keep_best_per_budget and cfg.init_checkpoint and not kept_start:
                per_budget = _select_per_budget(cfg, trainer)
    finally:
        trainer.close()
    return {
        "router": str(final),
        "updates": trainer.update,
        "env_steps": trainer.env_steps,
        "thresholds": thresholds,
        "final": rows[-1] if rows else None,
        "evaluations": trainer.evals,
        "selected_update": _shipped_update(trainer, confirmed),
        "confirmation": confirmed,
        "budget_selection": per_budget,
        "wall_time_s": time.perf_counter() - t0,
    }


def _calibrate(cfg: GRPOConfig, trainer: GRPOTrainer, router: Path, folder: str) -> dict:
    """Eq. 7 thresholds of ``router`` at ``cfg.budgets``, written into the file."""
    report = calibrate_router(
        router,
        trainer._probe,
        split=cfg.calibration_split or _default_calibration_split(trainer.unwrapped),
        episodes=cfg.calibration_episodes,
        refine_iters=cfg.calibration_refine_iters,
        budgets=cfg.budgets,
        seed=cfg.seed if cfg.calibration_seed is None else cfg.calibration_seed,
        out_dir=Path(cfg.out) / folder,
        progress=cfg.progress,
    )
    return report.thresholds


def _shipped_update(trainer: GRPOTrainer, confirmation: dict[str, Any] | None) -> int:
    """The update whose router ``router.pt`` holds: the kept one, the start (0) where the
    confirmation failed, the last without keep-best."""
    if trainer.best is None:
        return trainer.update
    if confirmation is not None and confirmation["router"] == "start":
        return 0
    return int(trainer.best["update"])


def _confirm_plan(cfg: GRPOConfig, trainer: GRPOTrainer) -> tuple[list[int], tuple[int, ...]]:
    """The fresh episodes of :func:`training.selection.confirm_plan` for this run."""
    n = trainer.unwrapped.task.num_tasks(trainer.eval_split())
    used = eval_plan(n, cfg.eval_episodes, cfg.seed)
    return confirm_plan(n, cfg.confirm_episodes, cfg.seed, used)


def _confirm(cfg: GRPOConfig, trainer: GRPOTrainer, refined: torch.nn.Module) -> dict[str, Any]:
    """``confirm_episodes``: the kept router against the start, both greedy at the operating
    point they were selected at, on fresh episodes; ``keep_best_rule`` decides once more. The
    result (rows, paired gain, choice) goes to ``confirmation.json``."""
    from training.evaluation import evaluate, write_json

    assert trainer.best is not None
    split = trainer.eval_split()
    tasks, seeds = _confirm_plan(cfg, trainer)
    start_bias = trainer.evals[0].get("high_bias", trainer.start_bias)
    refined_bias = trainer.best.get("high_bias", trainer.high_bias)  # older rows: the last
    rows = {}
    for name, model, bias in (
        ("start", trainer.ref_model, start_bias),
        ("refined", refined, refined_bias),
    ):
        result = evaluate(
            _GreedyRouter(trainer, model, bias),
            trainer._probe,
            split=split,
            task_indices=tasks,
            seeds=seeds,
            progress=False,
        )
        rows[name] = eval_row(result.records, split)
    data = {"split": split, "tasks": tasks, "seeds": list(seeds), "update": trainer.best["update"]}
    data |= confirmation(
        rows["start"], rows["refined"], rule=cfg.keep_best_rule, level=cfg.keep_best_level
    )
    write_json(data, Path(cfg.out) / CONFIRMATION)
    return data


def _select_per_budget(cfg: GRPOConfig, trainer: GRPOTrainer) -> dict[str, Any]:
    """``keep_best_per_budget``: the start router, calibrated exactly like the refined one,
    against the refined router at each budget K on the keep-best evaluation episodes; the
    choice per K (:func:`training.selection.budget_choices`) goes to ``budget_selection.json``.

    The refined router is trained at one operating point and recalibrated to every K; that
    leans on the ranking of its scores, which the RL objective does not protect. Choosing per
    K on held-out episodes keeps a refinement from shipping a router that is worse than its
    start at a budget it was never checked at."""
    from training.evaluation import evaluate, write_json
    from training.policies import load_policy

    out = Path(cfg.out)
    start = copy.deepcopy(trainer.ref_model)
    _policy(start, {**trainer.meta, "trained_with": "start of GRPO (init_checkpoint)"}).save(
        out / START
    )
    _calibrate(cfg, trainer, out / START, "calibration_start")
    split = trainer.eval_split()
    if cfg.confirm_episodes:  # fresh episodes: the refined router was not chosen on them
        tasks, seeds = _confirm_plan(cfg, trainer)
    else:
        tasks, seeds = eval_plan(
            trainer.unwrapped.task.num_tasks(split), cfg.eval_episodes, cfg.seed
        )
    rows: dict[str, dict[float, dict[str, Any]]] = {}
    for name, path in (("start", out / START), ("refined", out / FINAL)):
        rows[name] = {}
        for k in cfg.budgets:
            result = evaluate(
                load_policy(path, trainer._probe, budget=k),
                trainer._probe,
                split=split,
                task_indices=tasks,
                seeds=seeds,
                progress=False,
            )
            rows[name][k] = eval_row(result.records, split)
    choices = budget_choices(
        rows["start"], rows["refined"], rule=cfg.keep_best_rule, level=cfg.keep_best_level
    )
    files = {"start": START, "refined": FINAL}
    data = {
        "rule": cfg.keep_best_rule,
        "level": cfg.keep_best_level,
        "split": split,
        "episodes": len(tasks) * len(seeds),
        "budgets": {f"{k:g}": c | {"file": files[c["router"]]} for k, c in choices.items()},
        "rows": {name: {f"{k:g}": row for k, row in by_k.items()} for name, by_k in rows.items()},
    }
    write_json(data, out / BUDGET_SELECTION)
    return data


def router_for_budget(out: str | Path, budget: float) -> Path:
    """The router file a ``train-grpo`` run ships at budget K: ``router.pt``, or
    ``start_router.pt`` where ``keep_best_per_budget`` kept the start (``budget_selection.json``);
    runs without that file ship ``router.pt`` at every K."""
    out = Path(out)
    path = out / BUDGET_SELECTION
    if not path.exists():
        return out / FINAL
    import json

    chosen = json.loads(path.read_text())["budgets"]
    key = f"{float(budget):g}"
    if key not in chosen:
        raise CheckpointError(
            f"{path} chose routers at budgets {sorted(chosen)}: expected one of them, got {key}"
        )
    return out / chosen[key]["file"]


def _default_calibration_split(env: Any) -> str:
    """``valid_train`` (ALFWorld) or ``eval`` (WebShop): the pool disjoint from train/test."""
    names = list(env.task.splits())
    for name in ("valid_train", "eval"):
        if name in names:
            return name
    raise ConfigError(
        f"no calibration split among {names}: expected valid_train or eval; pass "
        "--calibration-split"
    )


# ----------------------------------------------------------------------------- CLI


def cmd_train_grpo(args: argparse.Namespace) -> int:
    cfg = config_from_args(GRPOConfig, args)
    summary = train_grpo(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    from training.evaluation import write_json

    write_json(summary, Path(cfg.out) / "summary.json")
    final = summary["final"] or {}
    print(
        f"GRPO: {summary['updates']} updates, {summary['env_steps']} env steps in "
        f"{summary['wall_time_s']:.0f} s; last batch: return {final.get('mean_return', math.nan):.3f}, "
        f"success {final.get('success_rate', math.nan):.2f}, HP {final.get('hp_fraction', math.nan):.2f}"
    )
    evals = summary["evaluations"]
    if evals:
        chosen = next(e for e in evals if e["update"] == summary["selected_update"])
        print(
            f"evaluation on {chosen['split']} ({chosen['episodes']} episodes): utility "
            f"{evals[0]['utility']:.3f} at the start, {evals[-1]['utility']:.3f} after update "
            f"{evals[-1]['update']}; kept update {chosen['update']} (utility "
            f"{chosen['utility']:.3f}, keep-best rule {cfg.keep_best_rule!r})"
        )
    if summary["confirmation"]:
        conf = summary["confirmation"]
        print(confirmation_line(conf, f"update {conf['update']}"))
    print(f"router: {summary['router']} (thresholds {summary['thresholds']})")
    chosen = summary["budget_selection"]
    if chosen:
        print(
            f"per budget ({chosen['rule']} rule on {chosen['episodes']} {chosen['split']} "
            "episodes; gain = refined - start utility, two-sided "
            f"{100 * (2 * chosen['level'] - 1):.0f}% CI):"
        )
        for k, c in chosen["budgets"].items():
            g = c["gain"]
            print(
                f"  K={k}: {c['file']} (gain {g['value']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}], "
                f"HP {c['start_hp']:.2f} -> {c['refined_hp']:.2f})"
            )
    shipped = summary["router"]
    if summary["thresholds"]:  # the file this run ships at that K
        shipped = str(router_for_budget(cfg.out, cfg.budgets[0]))
    print(
        f"evaluate: precision-gym evaluate --env {cfg.env_id} --router {shipped} "
        + (f"--budget {cfg.budgets[0]:g}" if summary["thresholds"] else "")
    )
    return 0


def add_parser(subparsers: Any) -> None:
    add_config_parser(
        subparsers,
        "train-grpo",
        GRPOConfig,
        cmd_train_grpo,
        help="GRPO refinement of the router (paper Sec. 4.3), from a KL-ST checkpoint or scratch",
        doc=__doc__,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_command(add_parser))
