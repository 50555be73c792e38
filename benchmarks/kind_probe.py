"""Can a router that reads observations learn the step kind? (SIMULATED headroom diagnostic)

The kind oracle (``agents.KindOracleRouter``) beats KL-ST's curve at low high-precision
fractions on ALFWorld by routing by *step kind*: navigation low, every other kind high
(``--kind-shares 0.1`` in ``matched_hp.py``). It reads the simulator's state model, so its
edge is an attainable ceiling only if the kind of the pending step can be read from the
router's input. This script trains the same Transformer router on the simulator's step-kind
labels instead of KL labels, and so tells the two cases apart. Read top to bottom:

1. load a KL collection (``--kl``: the one KL-ST was trained on) and label each state
   ``high`` where the low tier's critical share of its kind and task type is at least
   ``--min-share`` (the kind oracle's rule; navigation steps fall below 0.1, every other kind
   is above it), else ``low``;
2. train a router of the same shape on those labels with KL-ST's trainer (tasks split into
   train / validation as KL-ST's are; the best epoch by validation balanced accuracy), and
   print its validation balanced accuracy and AUC;
3. calibrate its thresholds at ``--budgets`` on ``--calib-split`` as every router is.

Then ``matched_hp.py --router "kind probe=OUT/router.pt#K@SEED"`` plays it against KL-ST's
curve. A probe that reaches the kind oracle's gain shows the headroom is attainable from
observations; one that does not shows it is not, for this router and encoder. The probe is
trained on simulator labels that no real deployment has: it is a diagnostic, not a method.

    python benchmarks/kind_probe.py --kl runs/kl --out runs/kind_probe
    python benchmarks/kind_probe.py --quick --out /tmp/kp   # smoke test: WebShop, tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared" / "alfworld").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared" / "alfworld")

QUICK = ["--env-id", "DMR-WebShop-v0", "--calib-split", "eval", "--calib-episodes", "2",
         "--budgets", "0.5", "--epochs", "1", "--n-layers", "1", "--kl-episodes", "4"]  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--kl", help="KL collection folder (collect-kl --out), or several "
                   "comma-separated (aggregated, e.g. with one collected under the probe "
                   "itself: collect-kl --behaviour); --quick builds one")  # fmt: skip
    p.add_argument("--env-id", default="DMR-ALFWorld-v0", help="registered env id")
    p.add_argument("--min-share", type=float, default=0.1,
                   help="a state is labelled high where the low tier's critical share of its "
                   "kind and task type is at least this (the kind oracle's rule)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=14, help="maximum epochs (KL-ST's)")
    p.add_argument("--patience", type=int, default=4, help="early stopping patience (KL-ST's)")
    p.add_argument("--d-model", type=int, default=64, help="router width (KL-ST's)")
    p.add_argument("--n-layers", type=int, default=8, help="router depth (KL-ST's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and shuffling")
    p.add_argument("--budgets", default="0.1,0.2,0.24,0.3,0.4",
                   help="comma-separated K the thresholds are calibrated at")  # fmt: skip
    p.add_argument("--calib-split", default="valid_train", help="calibration split")
    p.add_argument("--calib-episodes", type=int, default=24, help="calibration episodes")
    p.add_argument("--kl-episodes", type=int, default=0, help="--quick: KL episodes collected")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", required=True, help="output folder: router.pt, probe.json")
    p.add_argument("--overwrite", action="store_true", help="replace a trained probe in --out")
    p.add_argument("--quick", action="store_true", help="a tiny WebShop run (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args = p.parse_args([*QUICK, *argv])  # flags given override the quick ones
    if not args.kl and not args.quick:
        raise SystemExit("--kl is required: the KL collection KL-ST was trained on")
    if not 0.0 < args.min_share <= 1.0:
        raise SystemExit(f"--min-share must be in (0, 1], got {args.min_share}")
    try:
        args.budgets = tuple(float(k) for k in args.budgets.split(","))
    except ValueError:
        raise SystemExit(
            f"--budgets expects comma-separated numbers, got {args.budgets!r}"
        ) from None
    if not all(0.0 < k < 1.0 for k in args.budgets):
        raise SystemExit(f"--budgets must lie in (0, 1), got {list(args.budgets)}")
    return args


def kind_labels(kinds: Any, task_types: Any, pair: Any, min_share: float) -> np.ndarray:
    """Class index per state (0 = high tier, 1 = low): high where the low tier's critical
    share of the state's kind and task type (``pair.critical_share``, the simulator's own
    state model, as ``agents.KindOracleRouter`` reads it) is at least ``min_share``."""
    low = pair.n_tiers - 1
    share = np.array(
        [
            pair.critical_share(low, SimpleNamespace(task_type=t), k)
            for k, t in zip(list(kinds), list(task_types), strict=True)
        ]
    )
    return np.where(share >= min_share, 0, 1).astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from precision_gym.envs.agent_step import _simulated_pair
    from precision_gym.threads import configure_torch_threads
    from training.calibrate import calibrate_router
    from training.cli.common import make_env
    from training.kl_collect import load_kl_dataset
    from training.kl_st import KLSTTrainer, TrainConfig
    from training.stats import rank_auc
    from training.thresholds import class_weights

    configure_torch_threads(args.threads)
    out = Path(args.out)
    env = make_env(args.env_id, {})
    pair = _simulated_pair(env.unwrapped.tiers[0].backend) if env.unwrapped.simulated else None
    if pair is None:
        raise SystemExit(f"{args.env_id} has no SIMULATED tiers: the labels come from them")
    kl = args.kl
    if kl is None:  # --quick: a tiny collection
        from training.kl_collect import CollectConfig, collect_kl

        kl = str(out / "kl")
        collect_kl(
            kl,
            CollectConfig(env_id=args.env_id, episodes=args.kl_episodes, seed=0),
            env=env,
            progress=False,
        )

    kinds, known = set(load_kl_dataset(kl).kind.tolist()), set(pair.preset.tiers[-1].critical_share)
    if not kinds <= known:  # checked before anything is written
        raise SystemExit(
            f"{kl} holds step kinds {sorted(kinds)}; {args.env_id}'s simulated tiers know "
            f"{sorted(known)}: a collection of another task?"
        )

    class KindProbeTrainer(KLSTTrainer):
        """KL-ST's trainer with the step-kind labels in place of the KL ones."""

        progress_desc = "train kind probe"

        def __init__(self, config: TrainConfig, **kw: Any) -> None:
            super().__init__(config, **kw)
            y = kind_labels(self.ds.kind, self.ds.task_type, pair, args.min_share)
            self.tr_y, self.va_y = y[self.tr_rows], y[self.va_rows]
            self.w_np = class_weights(self.tr_y, len(self.ds.tier_names))
            import torch

            self.w = torch.tensor(self.w_np, dtype=torch.float32)

    cfg = TrainConfig(
        data=kl,
        out=str(out),
        epochs=args.epochs,
        patience=args.patience,
        d_model=args.d_model,
        n_layers=args.n_layers,
        seed=args.seed,
    )
    trainer = KindProbeTrainer(cfg, progress=True, overwrite=args.overwrite)
    print(
        f"labels: step kind (high where the low tier's critical share >= {args.min_share:g}); "
        "the KL threshold above is not used"
    )
    trainer.train()
    result = trainer.finish()
    from agents.router import TransformerRouterPolicy
    from training.kl_st import _evaluate

    policy = TransformerRouterPolicy.load(result.router_path)
    _, bal_acc, p = _evaluate(
        trainer.model, trainer.ds, trainer.va_rows, trainer.va_y, trainer.w, 256
    )
    high = trainer.va_y == 0
    val_auc = rank_auc(p[high, 0], p[~high, 0]) if high.any() and (~high).any() else None
    policy.metadata |= {
        "trained_with": "kind-probe",  # names it: kindprobe-router(K=...)
        "kind_probe": {
            "what": "SIMULATED step-kind labels in place of KL ones: a diagnostic, not a method",
            "min_share": args.min_share,
            "val_auc": val_auc,
            "val_balanced_accuracy": bal_acc,
            "high_share": float(high.mean()),
        },
    }
    for key in ("tau_kl", "tau_kl_method", "kl_counts"):
        policy.metadata.pop(key, None)
    policy.save(result.router_path)
    (out / "kl_hist.png").unlink(missing_ok=True)  # the trainer's KL histogram: not our labels
    calibrate_router(
        result.router_path,
        env,
        split=args.calib_split,
        episodes=args.calib_episodes,
        budgets=args.budgets,
        seed=0,
        out_dir=out / "calibration",
    )
    summary = {
        "router": str(result.router_path),
        "kl": str(kl),
        "min_share": args.min_share,
        "n_train_states": result.n_train,
        "n_val_states": result.n_val,
        "val_high_share": float(high.mean()),
        "val_balanced_accuracy": bal_acc,
        "val_auc": val_auc,
        "best_epoch": result.best_epoch,
        "thresholds": TransformerRouterPolicy.load(result.router_path).thresholds,
        "calibration": str(out / "calibration"),
    }
    from precision_gym.io import atomic_write_text

    atomic_write_text(out / "probe.json", json.dumps(summary, indent=2) + "\n")
    print("SIMULATED step-kind labels: a diagnostic of what a router can read, not a method.")
    shown = "n/a (one class)" if val_auc is None else f"{val_auc:.3f}"
    print(
        f"kind probe: val balanced accuracy {bal_acc:.3f}, AUC {shown} "
        f"({result.n_val} validation states of held-out tasks, {high.mean():.0%} labelled high)"
    )
    print(f"thresholds: {summary['thresholds']}  (calibrated on {args.calib_split})")
    print(f"wrote {result.router_path} and {out / 'probe.json'}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
