"""Session 20 diagnostic (SIMULATED): how well do the kind probe and KL-ST rank the states
their own routing reaches, against the states of always-high trajectories they were trained
on? Held-out tasks only (not in the router's train_tasks). Labels: the step-kind labels of
benchmarks/kind_probe.py (probe) and KL > tau_KL (KL-ST).

    python benchmarks/results/dagger_s20/shift_auc.py
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)

from kind_probe import kind_labels  # noqa: E402

from agents.router import TransformerRouterPolicy  # noqa: E402
from precision_gym.envs.agent_step import _simulated_pair  # noqa: E402
from training.cli.common import make_env  # noqa: E402
from training.kl_collect import load_kl_dataset  # noqa: E402
from training.stats import rank_auc  # noqa: E402

R = Path("/work/runs")
env = make_env("DMR-ALFWorld-v0", {})
pair = _simulated_pair(env.unwrapped.tiers[0].backend)
cases = [
    ("kind probe", R / "s17/kind_probe/router.pt", R / "s20/kl_probe024", "kind"),
    ("kind probe + DAgger", R / "s20/kind_probe_dagger/router.pt", R / "s20/kl_probe024", "kind"),
    ("KL-ST", R / "pvg_l05_final/klst/router.pt", R / "s20/kl_klst02", "kl"),
    ("KL-ST + DAgger", R / "s20/klst_dagger/router.pt", R / "s20/kl_klst02", "kl"),
]
base = load_kl_dataset(R / "pvg_l05_heldout/kl")
print("| router | labels | states | AUC, always-high states | AUC, its own K-routed states |")
print("|---|---|---:|---:|---:|")
for name, path, onpol, labels in cases:
    pol = TransformerRouterPolicy.load(path)
    train = set(pol.metadata["train_tasks"])
    row = []
    for ds in (base, load_kl_dataset(onpol)):
        rows = np.flatnonzero(~np.isin(ds.task_id, list(train)) & ~np.isnan(ds.kl[:, 0]))
        if labels == "kind":
            y = kind_labels(ds.kind[rows], ds.task_type[rows], pair, 0.1) == 0
        else:
            y = ds.kl[rows, 0] > 0.03162277660168379
        with torch.inference_mode():
            s = np.concatenate([pol.high_precision_score(ds.observations(rows[i : i + 256]))
                                for i in range(0, len(rows), 256)])  # fmt: skip
        row.append((len(rows), rank_auc(s[y], s[~y]), y.mean()))
    print(f"| {name} | {labels} | {row[0][0]} / {row[1][0]} | {row[0][1]:.3f} ({row[0][2]:.0%} high) "
          f"| {row[1][1]:.3f} ({row[1][2]:.0%} high) |")  # fmt: skip
