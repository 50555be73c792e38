"""Benchmark: the whole demo pipeline (issue 4) and the router's forward pass per decision.

Reads top to bottom (CleanRL style):
  1. run ``precision-gym demo`` (collect KL on a train sample -> train KL-ST -> calibrate on
     valid_train -> evaluate baselines + router budgets on a valid_unseen sample), which
     times every stage (``stage_times_s`` in its results.json);
  2. time the trained router's forward pass per decision: batch 1, ``policy.predict`` as
     the evaluator calls it, median over >= 200 calls, on real observations of three
     history lengths, torch with 1 thread.

    python benchmarks/pipeline.py --out runs/bench_pipeline

Everything runs on the SIMULATED precision pair: timings of the pipeline, not real-LLM
results. Record the printed figures in benchmarks/RESULTS.md ("## Pipeline (issue 4)").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
p.add_argument("--out", default="runs/bench_pipeline", help="pipeline output folder")
p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
p.add_argument("--kl-episodes", type=int, default=30, help="train-split KL rollouts")
p.add_argument("--calib-episodes", type=int, default=12, help="valid_train calibration pool")
p.add_argument("--episodes", type=int, default=6, help="valid_unseen tasks (1 seed)")
p.add_argument("--calls", type=int, default=300, help="timed forward calls per length")
p.add_argument("--skip-pipeline", action="store_true", help="only time the forward pass")
args = p.parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from precision_gym.io import atomic_write_text  # noqa: E402
from training.cli.main import main  # noqa: E402

out = Path(args.out)
figures: dict[str, object] = {
    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    "torch": torch.__version__,
}

# ---------------------------------------------------------------- 1. the demo pipeline
if not args.skip_pipeline:
    demo = ["demo", "--out", str(out), "--kl-episodes", str(args.kl_episodes)]
    demo += ["--calib-episodes", str(args.calib_episodes), "--episodes", str(args.episodes)]
    if args.overwrite:
        demo.append("--overwrite")
    t0 = time.perf_counter()
    if main(demo) != 0:
        raise SystemExit(f"precision-gym {' '.join(demo)} failed")
    figures["pipeline_wall_s"] = time.perf_counter() - t0
    figures["stage_times_s"] = json.loads((out / "results.json").read_text())["stage_times_s"]
    print(f"pipeline wall time: {figures['pipeline_wall_s']:.1f} s")
    for stage, seconds in figures["stage_times_s"].items():
        print(f"  {stage:<16} {seconds:8.1f}")

# ---------------------------------------------------------------- 2. router forward pass
from agents.router import TransformerRouterPolicy  # noqa: E402
from training.kl_collect import load_kl_dataset  # noqa: E402

torch.set_num_threads(1)
policy = TransformerRouterPolicy.load(out / "klst" / "router.pt")
ds = load_kl_dataset(out / "kl")
lengths = np.minimum(ds.t, 64)
forward: dict[str, dict[str, float]] = {}
for want in (1, 8, 64):
    # a real state with about `want` valid steps (or a full-length window of the longest)
    row = int(np.argmin(np.abs(lengths - want)))
    obs = {k: v[0] for k, v in ds.observations([row]).items()}
    if want == 64 and int(obs["mask"].sum()) < 64:
        obs["mask"][:] = 1.0  # full window: every slot valid
    for _ in range(20):  # warm-up
        policy.predict(obs)
    times = []
    for _ in range(args.calls):
        t = time.perf_counter()
        policy.predict(obs)
        times.append(time.perf_counter() - t)
    n_valid = int(obs["mask"].sum())
    forward[f"len{n_valid}"] = {
        "median_ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * float(np.quantile(times, 0.9)),
        "calls": args.calls,
    }
    print(
        f"router forward, batch 1, {n_valid:>2} valid steps: median "
        f"{forward[f'len{n_valid}']['median_ms']:.2f} ms, p90 {forward[f'len{n_valid}']['p90_ms']:.2f} ms "
        f"({args.calls} calls, d_model={policy.config.d_model}, {policy.config.n_layers} layers)"
    )
figures["router_forward"] = forward
figures["router_config"] = {
    "d_model": policy.config.d_model,
    "n_layers": policy.config.n_layers,
    "n_heads": policy.config.n_heads,
}
atomic_write_text(out / "bench.json", json.dumps(figures, indent=2) + "\n")
print(f"wrote {out / 'bench.json'} (SIMULATED precision pair)")
