"""KL-ST: supervised warm start of the Transformer router from KL labels (paper Section 4.2).

Labels ``y = 1[KL(p_high || p_low) > tau_KL]`` (Eq. 5; ``tau_KL`` picked automatically in
the sparse plateau of the log-KL histogram, or given), class-weighted cross-entropy with
weights inversely proportional to class frequency (Eq. 6), held-out balanced accuracy on
a validation set split *by task* (no task has states on both sides), early stopping on it,
seeded (torch + numpy), a checkpoint after every epoch (atomic) and ``--resume``.

``precision-gym train-klst --data runs/kl --out runs/klst``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from precision_gym.error import ConfigError
from precision_gym.io import atomic_write_text
from training.cli.common import (
    add_command,
    add_overwrite_arg,
    add_quiet_arg,
    config_arguments,
    config_from_args,
)
from training.kl_collect import kl_folders, load_kl_dataset
from training.thresholds import (
    ThresholdChoice,
    balanced_accuracy,
    class_weights,
    kl_labels,
    plateau_threshold,
    plot_kl_histogram,
)
from training.trainer import Trainer

__all__ = [
    "KLSTTrainer",
    "TrainConfig",
    "TrainResult",
    "add_parser",
    "split_by_task",
    "train_klst",
    "weighted_cross_entropy",
]

TRAIN_STATE = "train_state.pt"
ROUTER_FILE = "router.pt"


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """KL-ST training settings (each field is a ``train-klst`` flag)."""

    data: str = _f(
        "runs/kl",
        "KL collection folder (collect-kl --out), or several comma-separated (aggregated: "
        "the paper's collection and one under a behaviour router, collect-kl --behaviour)",
    )
    out: str = _f("runs/klst", "output folder: router.pt, train_state.pt, history, plots")
    tau_kl: float | None = _f(None, "manual tau_KL (default: auto, sparse plateau)")
    kinds: list[str] = field(
        default_factory=list, metadata={"help": "train only on these step kinds (default: all)"}
    )
    epochs: int = _f(30, "maximum epochs")
    batch_size: int = _f(64, "minibatch size")
    lr: float = _f(3e-4, "AdamW learning rate")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    val_fraction: float = _f(0.2, "fraction of TASKS held out for validation")
    patience: int = _f(6, "early stopping: epochs without a better val balanced accuracy")
    seed: int = _f(0, "seed of the task split, init, shuffling and dropout")
    d_model: int = _f(128, "router width")
    n_layers: int = _f(8, "router encoder layers (paper: 8)")
    n_heads: int = _f(4, "router attention heads")
    dropout: float = _f(0.1, "router dropout")
    threads: int = _f(0, "torch CPU threads (0 = leave torch's default)")

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "val_fraction": 0.0 < self.val_fraction < 1.0,
            "patience": self.patience >= 1,
            "d_model": self.d_model >= 1,
            "n_layers": self.n_layers >= 1,
            "n_heads": self.n_heads >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "threads": self.threads >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            ranges = {
                "val_fraction": "in (0, 1)",
                "dropout": "in [0, 1)",
                "lr": "> 0",
                "weight_decay": ">= 0",
                "threads": ">= 0",
            }
            k = bad[0]
            raise ConfigError(
                f"TrainConfig.{k} must be {ranges.get(k, '>= 1')}, got {getattr(self, k)}"
            )
        if self.tau_kl is not None and not self.tau_kl > 0:
            raise ConfigError(
                f"TrainConfig.tau_kl must be > 0 (or None for auto), got {self.tau_kl}"
            )
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"TrainConfig.d_model ({self.d_model}) must be divisible by n_heads "
                f"({self.n_heads})"
            )

    #: fields that may differ between a run and its resumption
    RESUMABLE_CHANGES = ("out", "threads", "epochs", "patience")

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must match for ``--resume`` (all but :attr:`RESUMABLE_CHANGES`)."""
        return {k: v for k, v in asdict(self).items() if k not in self.RESUMABLE_CHANGES}


@dataclass
class TrainResult:
    router_path: Path
    threshold: ThresholdChoice
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    n_train: int
    n_val: int


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Eq. 6: ``sum_i w_{y_i} * CE_i / sum_i w_{y_i}`` (PyTorch's weighted mean)."""
    return F.cross_entropy(logits, labels, weight=weights)


def split_by_task(
    task_ids: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row masks (train, val): a seeded ``val_fraction`` of the distinct tasks is held out,
    so no task has states on both sides (at least one task each side)."""
    tasks = np.unique(np.asarray(task_ids))
    if len(tasks) < 2:
        raise ConfigError(
            f"a by-task validation split needs >= 2 distinct tasks, got {len(tasks)}: "
            "collect more episodes"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tasks))
    n_val = min(max(1, int(round(val_fraction * len(tasks)))), len(tasks) - 1)
    val_tasks = set(tasks[order[:n_val]].tolist())
    val = np.array([t in val_tasks for t in task_ids], dtype=bool)
    return ~val, val


def _length_batches(lengths: np.ndarray, batch_size: int, seed: Any) -> list[np.ndarray]:
    """Seeded minibatches of similar sequence length (less padding, same samples per epoch):
    shuffle, sort within chunks of 16 batches by length, cut, shuffle the batch order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = batch_size * 16
    batches = []
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def _evaluate(
    model: Any, ds: Any, rows: np.ndarray, labels: np.ndarray, w: torch.Tensor, batch_size: int
) -> tuple[float, float, np.ndarray]:
    model.eval()
    losses, probs = [], []
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            r = rows[i : i + batch_size]
            obs = ds.observations(r)
            logits = model(torch.from_numpy(obs["embeddings"]), torch.from_numpy(obs["mask"]))
            y = torch.from_numpy(labels[i : i + batch_size])
            losses.append(float(F.cross_entropy(logits, y, weight=w, reduction="sum")))
            probs.append(torch.softmax(logits, -1).numpy())
    p = np.concatenate(probs)
    pred = np.where(p[:, 0] >= 0.5, 0, 1 + np.argmax(p[:, 1:], axis=1))
    denom = float(w[torch.from_numpy(labels)].sum())
    return sum(losses) / max(denom, 1e-12), balanced_accuracy(labels, pred), p


class KLSTTrainer(Trainer):
    """KL-ST on the :class:`~training.trainer.Trainer` skeleton: a step is one epoch over the
    training states; the checkpoint holds the router, the optimizer and the best epoch so far;
    early stopping after ``patience`` epochs without a better validation balanced accuracy.

    Everything up to the first epoch (data, tau_KL, labels, split, class weights, the
    histogram plot, the seeded router) happens on construction, after the output check.
    """

    checkpoint_file = TRAIN_STATE
    checkpoint_format = "precision-gym/klst-train-state/v2"
    checkpoint_what = "KL-ST training state"
    artefacts = (ROUTER_FILE, TRAIN_STATE)
    resumable_fields = TrainConfig.RESUMABLE_CHANGES
    resume_needs_checkpoint = False  # --resume on a fresh folder starts afresh
    progress_desc = "train KL-ST"
    progress_unit = "epoch"

    def __init__(
        self,
        config: TrainConfig,
        progress: bool = True,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        from agents.router import RouterConfig, TransformerRouter

        super().__init__(config, config.out, resume=resume, overwrite=overwrite, progress=progress)
        cfg = self.cfg = config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.ds = ds = load_kl_dataset(cfg.data)  # bad --data fails before a folder is made
        self.out.mkdir(parents=True, exist_ok=True)
        n_tiers = len(ds.tier_names)
        keep = np.ones(len(ds), dtype=bool)
        if cfg.kinds:
            keep = np.isin(ds.kind, cfg.kinds)
        keep &= ~np.isnan(ds.kl).any(axis=1)
        if not keep.any():
            raise ConfigError(
                f"no KL states left to train on: kinds {cfg.kinds or 'all'} among "
                f"{sorted(set(ds.kind.tolist()))}"
            )
        rows_all = np.flatnonzero(keep)
        self.choice = choice = plateau_threshold(ds.kl[rows_all, -1], tau=cfg.tau_kl)
        labels_bin = kl_labels(ds.kl[rows_all] if n_tiers > 2 else ds.kl[rows_all, 0], choice.tau)
        # class index = tier: binary y = 1 (needs high precision) -> tier 0, y = 0 -> tier 1
        targets = labels_bin if n_tiers > 2 else (1 - labels_bin)
        train_m, val_m = split_by_task(ds.task_id[rows_all], cfg.val_fraction, cfg.seed)
        self.tr_rows, va_rows = rows_all[train_m], rows_all[val_m]
        self.tr_y, va_y = targets[train_m], targets[val_m]
        by_len = np.argsort(ds.t[va_rows], kind="stable")  # less padding when evaluating
        self.va_rows, self.va_y = va_rows[by_len], va_y[by_len]
        self.w_np = class_weights(self.tr_y, n_tiers)
        self.tr_lengths = np.minimum(ds.t[self.tr_rows], ds.max_len)
        self.w = torch.tensor(self.w_np, dtype=torch.float32)
        plot_kl_histogram(
            ds.kl[rows_all, -1], choice, self.out / "kl_hist.png", simulated=ds.simulated
        )
        print(choice.describe(), file=sys.stderr if not progress else sys.stdout)

        torch.manual_seed(cfg.seed)
        rcfg = RouterConfig(
            embed_dim=int(ds.vectors.shape[1]),
            max_len=ds.max_len,
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            n_tiers=n_tiers,
        )
        self.model = TransformerRouter(rcfg)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.best: dict[str, Any] = {
            "epoch": -1,
            "bal_acc": -math.inf,
            "val_loss": math.inf,
            "state": None,
        }

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs

    def epochs_since_best(self) -> int:
        return len(self.history) - 1 - self.best["epoch"] if self.history else 0

    def should_stop(self) -> bool:
        return self.epochs_since_best() >= self.cfg.patience

    def train_step(self, step: int) -> dict[str, Any]:
        """One epoch of class-weighted cross-entropy, then the validation metrics."""
        cfg, model, w, epoch = self.cfg, self.model, self.w, step
        t0 = time.perf_counter()
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: reproducible under resume
        total, denom = 0.0, 0.0
        for idx in _length_batches(self.tr_lengths, cfg.batch_size, [cfg.seed, epoch]):
            obs = self.ds.observations(self.tr_rows[idx])
            y = torch.from_numpy(self.tr_y[idx])
            logits = model(torch.from_numpy(obs["embeddings"]), torch.from_numpy(obs["mask"]))
            loss = weighted_cross_entropy(logits, y, w)
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.optimizer.step()
            bw = float(w[y].sum())
            total += float(loss.detach()) * bw
            denom += bw
        tr_loss = total / max(denom, 1e-12)
        va_loss, va_acc, _ = _evaluate(model, self.ds, self.va_rows, self.va_y, w, 256)
        if (va_acc, -va_loss) > (self.best["bal_acc"], -self.best["val_loss"]):
            self.best = {
                "epoch": epoch,
                "bal_acc": va_acc,
                "val_loss": va_loss,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        return {
            "epoch": epoch,
            "train_loss": tr_loss,
            "val_loss": va_loss,
            "val_balanced_accuracy": va_acc,
            "seconds": time.perf_counter() - t0,
        }

    def progress_postfix(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "loss": f"{row['train_loss']:.3f}",
            "val_bacc": f"{row['val_balanced_accuracy']:.3f}",
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best": self.best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best = state["best"]

    def finish(self) -> TrainResult:
        """Save the best epoch's router (with its metadata) and ``history.json``."""
        from agents.router import TransformerRouterPolicy

        cfg, ds, best, history = self.cfg, self.ds, self.best, self.history
        stopped = self.steps_done < cfg.epochs and self.should_stop()
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        train_tasks = sorted(set(ds.task_id[self.tr_rows].tolist()))
        policy = TransformerRouterPolicy(
            self.model,
            metadata={
                "trained_with": "KL-ST",
                "simulated": ds.simulated,
                "tier_names": ds.tier_names,
                **({"task": ds.task} if ds.task else {}),
                "kl_data": ",".join(str(p.resolve()) for p in kl_folders(cfg.data)),
                "tau_kl": self.choice.tau,
                "tau_kl_method": self.choice.method,
                "kl_counts": {"below": self.choice.n_below, "above": self.choice.n_above},
                "class_weights": self.w_np.tolist(),
                "train_config": asdict(cfg),
                "train_tasks": train_tasks,
                "n_train_states": len(self.tr_rows),
                "n_val_states": len(self.va_rows),
                "best_epoch": best["epoch"],
                "best_val_balanced_accuracy": best["bal_acc"],
                "history": history,
            },
        )
        router_path = policy.save(self.out / ROUTER_FILE)
        atomic_write_text(self.out / "history.json", json.dumps(history, indent=2) + "\n")
        return TrainResult(
            router_path=router_path,
            threshold=self.choice,
            history=history,
            best_epoch=int(best["epoch"]),
            stopped_early=stopped,
            n_train=len(self.tr_rows),
            n_val=len(self.va_rows),
        )


def train_klst(
    config: TrainConfig, progress: bool = True, resume: bool = False, overwrite: bool = False
) -> TrainResult:
    """Train a KL-ST router on a KL collection; see the module docstring.

    ``resume``: continue from ``out/train_state.pt`` when present (same settings required;
    ``epochs``/``patience`` may grow). The result equals an uninterrupted run's.
    ``overwrite``: start afresh in a folder that already holds a trained router; without it
    (or ``resume``) such a folder is refused before any work, so a rerun never wipes a
    trained and calibrated router.
    """
    trainer = KLSTTrainer(config, progress=progress, resume=resume, overwrite=overwrite)
    trainer.train()
    return trainer.finish()


# ----------------------------------------------------------------------------- CLI


def cmd_train(args: argparse.Namespace) -> int:
    """train the Transformer router on KL labels (KL-ST)"""
    cfg = config_from_args(TrainConfig, args)
    result = train_klst(cfg, progress=not args.quiet, resume=args.resume, overwrite=args.overwrite)
    last = result.history[-1] if result.history else {}
    print(
        f"wrote {result.router_path}: best epoch {result.best_epoch} "
        f"(val balanced accuracy {max(h['val_balanced_accuracy'] for h in result.history):.3f}; "
        f"{result.n_train} train / {result.n_val} val states; last train loss "
        f"{last.get('train_loss', math.nan):.3f}"
        + (", stopped early" if result.stopped_early else "")
        + ")"
    )
    return 0


def add_parser(sub: Any) -> None:
    p = add_command(sub, "train-klst", cmd_train)
    config_arguments(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue from out/train_state.pt")
    add_overwrite_arg(p, "a trained router and its thresholds", resume=True)
    add_quiet_arg(p)
