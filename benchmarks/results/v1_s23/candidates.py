"""What the keep-best rule turned down: each GRPO run's candidate (``best_router.pt``, the
router its keep-best evaluations preferred before confirmation sent the start back) played on
all 134 valid_unseen tasks at the run's own seed, at the sampling point it was trained and
selected at (the start's calibrated tau_K), against the start router at K on the same episodes
(the benchmark's ``fixed_s{seed}.json``): success, HP fraction (pooled over decisions) and
utility at the run's lambda, paired by task with 95% bootstrap CIs over the 134 tasks.

SIMULATED precision pair (bf16-sim, w4-sim): not a real-LLM result.
Usage: python candidates.py BENCH_OUT LAMBDA:K:RUN_DIR [LAMBDA:K:RUN_DIR ...]
(RUN_DIR's name ends in _s<seed>; BENCH_OUT holds the fixed units and klst/router.pt)
"""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import precision_gym  # noqa: F401  (registers the env ids)
from agents.router import TransformerRouterPolicy
from training.evaluation import episode_utility, evaluate
from training.stats import bootstrap_ci, paired_bootstrap_diff

torch.set_num_threads(1)
ENV_ID, SPLIT = "DMR-ALFWorld-v1", "valid_unseen"


def summary(records: list[dict], lam: float) -> tuple[np.ndarray, np.ndarray, float]:
    records = sorted(records, key=lambda r: r["task_index"])
    won = np.array([float(r["won"]) for r in records])
    util = np.array([episode_utility(r, lam) for r in records])
    hp = sum(r["high_decisions"] for r in records) / max(1, sum(r["decisions"] for r in records))
    return won, util, hp


def main() -> None:
    bench = Path(sys.argv[1])
    start = TransformerRouterPolicy.load(bench / "klst" / "router.pt")
    env = gym.make(ENV_ID)
    for spec in sys.argv[2:]:
        lam_s, k_s, run_s = spec.split(":", 2)
        lam, run = float(lam_s), Path(run_s)
        seed = int(run.name.rsplit("_s", 1)[1])
        fixed = json.loads((bench / f"fixed_s{seed}.json").read_text())["results"]
        base = [r for r in fixed[f"KL-ST K={float(k_s):g}"]["records"] if r["seed"] == seed]
        cand = TransformerRouterPolicy.load(run / "best_router.pt")
        cand.threshold = start.thresholds[f"{float(k_s):.6g}"]  # the sampling point
        res = evaluate(cand, env, env_id=ENV_ID, split=SPLIT, seeds=(seed,),
                       task_indices=[r["task_index"] for r in base], router_name="candidate",
                       progress=False)  # fmt: skip
        mine = [asdict(r) for r in res.records]
        (w0, u0, hp0), (w1, u1, hp1) = summary(base, lam), summary(mine, lam)
        print(
            f"{run.parent.name}/{run.name} (lambda {lam:g}, K {float(k_s):g}, seed {seed}, "
            f"{len(base)} tasks): success {w0.mean():.3f} -> {w1.mean():.3f}, "
            f"{paired_bootstrap_diff(w1, w0).fmt()}; HP {hp0:.3f} -> {hp1:.3f}; utility "
            f"{bootstrap_ci(u0).value:.3f} -> {bootstrap_ci(u1).value:.3f}, candidate - start "
            f"{paired_bootstrap_diff(u1, u0).fmt()}",
            flush=True,
        )
    env.close()


if __name__ == "__main__":
    main()
