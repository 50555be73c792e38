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
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from precision_gym.error import CheckpointError, ConfigError
from precision_gym.io import atomic_write_text, refuse_overwrite
from training.thresholds import (
    ThresholdChoice,
    balanced_accuracy,
    class_weights,
    kl_labels,
    plateau_threshold,
    plot_kl_histogram,
)

__all__ = [
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

    data: str = _f("runs/kl", "KL collection folder (collect-kl --out)")
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

    def fingerprint(self) -> dict[str, Any]:
        """Settings that must match for ``--resume`` (everything but ``out``/``threads``/``epochs``)."""
        d = asdict(self)
        for k in ("out", "threads", "epochs", "patience"):
            d.pop(k)
        return d


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


def _atomic_save(obj: Any, path: Path) -> None:
    from agents.router import atomic_torch_save

    atomic_torch_save(obj, path)


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
    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy
    from training.kl_collect import load_kl_dataset

    cfg = config
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: expected one of them")
    out = Path(cfg.out)
    if not (resume or overwrite):
        refuse_overwrite(out, [ROUTER_FILE, TRAIN_STATE])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_kl_dataset(cfg.data)
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
    choice = plateau_threshold(ds.kl[rows_all, -1], tau=cfg.tau_kl)
    labels_bin = kl_labels(ds.kl[rows_all] if n_tiers > 2 else ds.kl[rows_all, 0], choice.tau)
    # class index = tier: binary y = 1 (needs high precision) -> tier 0, y = 0 -> tier 1
    targets = labels_bin if n_tiers > 2 else (1 - labels_bin)
    train_m, val_m = split_by_task(ds.task_id[rows_all], cfg.val_fraction, cfg.seed)
    tr_rows, va_rows = rows_all[train_m], rows_all[val_m]
    tr_y, va_y = targets[train_m], targets[val_m]
    by_len = np.argsort(ds.t[va_rows], kind="stable")  # less padding when evaluating
    va_rows, va_y = va_rows[by_len], va_y[by_len]
    w_np = class_weights(tr_y, n_tiers)
    tr_lengths = np.minimum(ds.t[tr_rows], ds.max_len)
    w = torch.tensor(w_np, dtype=torch.float32)
    plot_kl_histogram(ds.kl[rows_all, -1], choice, out / "kl_hist.png", simulated=ds.simulated)
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
    model = TransformerRouter(rcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    best = {"epoch": -1, "bal_acc": -math.inf, "val_loss": math.inf, "state": None}
    start_epoch = 0
    state_path = out / TRAIN_STATE
    if state_path.exists() and resume:
        try:
            # tensors-only unpickler: a planted file cannot run code (issue 13, probe 5)
            st = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"training state {state_path} is corrupt or not a tensors-only file "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        if not isinstance(st, dict) or not {"model", "optimizer", "epoch"} <= set(st):
            raise CheckpointError(
                f"{state_path} is not a KL-ST training state: expected a dict with model, "
                f"optimizer and epoch, found {type(st).__name__}"
            )
        if st.get("fingerprint") != cfg.fingerprint():
            raise CheckpointError(
                f"cannot resume from {state_path}: it was trained with "
                f"{st.get('fingerprint')}, expected {cfg.fingerprint()}"
            )
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        history, best, start_epoch = st["history"], st["best"], st["epoch"] + 1
        print(f"resuming from epoch {start_epoch} ({state_path})", file=sys.stderr)

    def since_best() -> int:
        return len(history) - 1 - best["epoch"] if history else 0

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="train KL-ST", unit="epoch")
    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        if since_best() >= cfg.patience:
            stopped = True
            break
        t0 = time.perf_counter()
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: reproducible under resume
        total, denom = 0.0, 0.0
        for idx in _length_batches(tr_lengths, cfg.batch_size, [cfg.seed, epoch]):
            obs = ds.observations(tr_rows[idx])
            y = torch.from_numpy(tr_y[idx])
            logits = model(torch.from_numpy(obs["embeddings"]), torch.from_numpy(obs["mask"]))
            loss = weighted_cross_entropy(logits, y, w)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            bw = float(w[y].sum())
            total += float(loss.detach()) * bw
            denom += bw
        tr_loss = total / max(denom, 1e-12)
        va_loss, va_acc, _ = _evaluate(model, ds, va_rows, va_y, w, 256)
        history.append(
            {
                "epoch": epoch,
                "train_loss": tr_loss,
                "val_loss": va_loss,
                "val_balanced_accuracy": va_acc,
                "seconds": time.perf_counter() - t0,
            }
        )
        if (va_acc, -va_loss) > (best["bal_acc"], -best["val_loss"]):
            best = {
                "epoch": epoch,
                "bal_acc": va_acc,
                "val_loss": va_loss,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        _atomic_save(
            {
                "fingerprint": cfg.fingerprint(),
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "history": history,
                "best": best,
            },
            state_path,
        )
        if bar is not None:
            bar.set_postfix(loss=f"{tr_loss:.3f}", val_bacc=f"{va_acc:.3f}")
            bar.update()
    if bar is not None:
        bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    train_tasks = sorted(set(ds.task_id[tr_rows].tolist()))
    policy = TransformerRouterPolicy(
        model,
        metadata={
            "trained_with": "KL-ST",
            "simulated": ds.simulated,
            "tier_names": ds.tier_names,
            **({"task": ds.task} if ds.task else {}),
            "kl_data": str(Path(cfg.data).resolve()),
            "tau_kl": choice.tau,
            "tau_kl_method": choice.method,
            "kl_counts": {"below": choice.n_below, "above": choice.n_above},
            "class_weights": w_np.tolist(),
            "train_config": asdict(cfg),
            "train_tasks": train_tasks,
            "n_train_states": len(tr_rows),
            "n_val_states": len(va_rows),
            "best_epoch": best["epoch"],
            "best_val_balanced_accuracy": best["bal_acc"],
            "history": history,
        },
    )
    router_path = policy.save(out / ROUTER_FILE)
    atomic_write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    return TrainResult(
        router_path=router_path,
        threshold=choice,
        history=history,
        best_epoch=int(best["epoch"]),
        stopped_early=stopped,
        n_train=len(tr_rows),
        n_val=len(va_rows),
    )


# ----------------------------------------------------------------------------- CLI


def cmd_train(args: argparse.Namespace) -> int:
    kwargs = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    cfg = TrainConfig(**kwargs)
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
    p = sub.add_parser("train-klst", help="train the Transformer router on KL labels (KL-ST)")
    for f in fields(TrainConfig):
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata['help']} (default: {default})"
        if f.name == "kinds":
            p.add_argument(flag, nargs="*", default=default, help=helptext)
        elif f.name == "tau_kl":
            p.add_argument(flag, type=float, default=None, help=helptext)
        else:
            p.add_argument(flag, type=type(default), default=default, help=helptext)
    p.add_argument("--resume", action="store_true", help="continue from out/train_state.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train afresh into an --out folder that already holds a trained router "
        "(replaces it, thresholds included); without it or --resume such a folder is refused",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
