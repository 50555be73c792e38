"""Sessions 27-28: how far a KL-ST router built from scratch moves when its inputs move by a float
rounding (session 26: the same benchmark, seeds and data on another machine gave tau 0.236
at K = 0.4 where session 25 had 0.075).

Trains KL-ST as ``benchmarks/ppo_vs_grpo.py`` builds it (epochs 14, patience 4, d_model 64,
seed 0) on a KL collection of the SIMULATED tiers:

  A   the collection as it is, 1 torch thread (as the benchmark's process);
  A2  A again (the same machine, the same process: is the build deterministic?);
  T2  the same, 2 torch threads (another float summation order in the kernels);
  U   the collection with 0.1% of its stored fp16 embedding entries moved by one fp16 ulp
      (what the encoder's last-bit differences between two CPUs leave after fp16 rounding).

For each: the best epoch and its validation balanced accuracy, the largest weight
difference from A, and Eq. 7's threshold at each K on A's training states (the calibration
the benchmark runs on ALFWorld episodes, here on stored states, so no env is needed).
Usage: python klst_sensitivity.py KL_FOLDER WORK_FOLDER [BENCHMARK_ROUTER]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

KS = (0.1, 0.2, 0.4, 0.7, 0.9)


def perturbed_copy(src: Path, dst: Path, fraction: float, seed: int) -> int:
    """``src`` with ``fraction`` of every shard's fp16 vector entries one ulp up or down."""
    rng = np.random.default_rng(seed)
    shutil.copytree(src, dst)
    moved = 0
    for shard in sorted(dst.glob("shard_*.npz")):
        with np.load(shard) as z:
            data = {k: z[k] for k in z.files}
        v = data["vectors"]
        hit = rng.random(v.shape) < fraction
        up = rng.random(v.shape) < 0.5
        towards = np.where(up, np.float16(np.inf), np.float16(-np.inf)).astype(np.float16)
        data["vectors"] = np.where(hit, np.nextafter(v, towards), v).astype(np.float16)
        moved += int(hit.sum())
        np.savez(shard, **data)
    return moved


def train(data: Path, out: Path, threads: int):
    import torch

    from training.kl_st import TrainConfig, train_klst

    torch.set_num_threads(threads)
    return train_klst(
        TrainConfig(data=str(data), out=str(out), epochs=14, patience=4, d_model=64, seed=0),
        progress=False,
        overwrite=True,
    )


def main() -> None:
    import torch

    from agents.router import TransformerRouterPolicy
    from training.calibrate import training_pool_scores
    from training.thresholds import quantile_threshold

    kl, work = Path(sys.argv[1]), Path(sys.argv[2])
    bench = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    work.mkdir(parents=True, exist_ok=True)
    moved_dir = work / "kl_ulp"
    if moved_dir.exists():
        shutil.rmtree(moved_dir)
    moved = perturbed_copy(kl, moved_dir, 1e-3, seed=0)
    runs = {"A": (kl, 1), "A2": (kl, 1), "T2": (kl, 2), "U": (moved_dir, 1)}
    results, routers = {}, {}
    for name, (data, threads) in runs.items():
        results[name] = train(data, work / name, threads)
        routers[name] = TransformerRouterPolicy.load(work / name / "router.pt")
    torch.set_num_threads(1)
    a = routers["A"]
    scores_a = training_pool_scores(a)  # A's training states: one pool for every router
    ds_rows = len(scores_a)

    def pool_scores(policy):
        policy.metadata["kl_data"] = a.metadata["kl_data"]
        policy.metadata["train_tasks"] = a.metadata["train_tasks"]
        return training_pool_scores(policy)

    def max_diff(p, q) -> float:
        sp, sq = p.model.state_dict(), q.model.state_dict()
        return max(float((sp[k].float() - sq[k].float()).abs().max()) for k in sp)

    print(f"KL collection: {kl}; SIMULATED tiers; {ds_rows} training states; U moved {moved} "
          "fp16 entries by one ulp")  # fmt: skip
    print()
    head = "| build | best epoch | val bal. acc. | max weight diff from A | "
    print(head + " | ".join(f"tau K={k:g}" for k in KS) + " | HP at A's tau_0.4 |")
    print("|---|---:|---:|---:|" + "---:|" * len(KS) + "---:|")
    tau_a = quantile_threshold(scores_a, 0.4)
    rows = dict(routers)
    if bench is not None:
        rows["benchmark's router"] = TransformerRouterPolicy.load(bench)
    for name, r in rows.items():
        s = scores_a if name == "A" else pool_scores(r)
        res = results.get(name)
        best = f"{res.best_epoch}" if res else "-"
        acc = f"{max(h['val_balanced_accuracy'] for h in res.history):.4f}" if res else "-"
        taus = " | ".join(f"{quantile_threshold(s, k):.4g}" for k in KS)
        print(f"| {name} | {best} | {acc} | {max_diff(r, a):.3g} | {taus} | "
              f"{float(np.mean(s >= tau_a)):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
