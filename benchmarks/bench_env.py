"""Where does one env step's wall time go? (issue 2 benchmark)

Splits each router decision of ``DMR-ALFWorld-v0`` into: the task engine (TextWorld step),
the LLM call (here the SIMULATED pair, including the expert/planner it consults), the
embedding of the new step, the router's forward pass, and the rest (prompt building,
parsing, observation assembly, bookkeeping). The target is the overhead the library adds
around the engine:

    overhead_ratio = (embedding + router + rest) / task engine      (medians)

measured twice over the same episodes: **cold** (a fresh embedding cache: every step text is
encoded on its first visit, as in a real rollout) and **warm** (the same steps again: every
text is a cache hit, which is what repeated evaluations and GRPO groups see).

Run:  python benchmarks/bench_env.py [--steps 200] [--episodes 12]
Prints ``overhead_ratio_cold=<x>``, then last ``overhead_ratio=<x>`` (warm); target <= 0.2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared/alfworld/json_2.1.1").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared/alfworld")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import precision_gym  # noqa: E402, F401
from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=200, help="measured router decisions (>= 200)")
parser.add_argument("--episodes", type=int, default=12, help="valid_unseen tasks cycled through")
parser.add_argument("--threads", type=int, default=1, help="torch threads")
args = parser.parse_args()
torch.set_num_threads(args.threads)

# --- the env, an (untrained, default 8-layer) Transformer router -------------------------
env = gym.make("DMR-ALFWorld-v0").unwrapped
policy = TransformerRouterPolicy(TransformerRouter(RouterConfig(n_layers=8)))
timers: dict[str, list[float]] = defaultdict(list)
_current: dict[str, float] = defaultdict(float)


def timed(name, fn):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            _current[name] += time.perf_counter() - t0

    return wrapper


env.task.step = timed("engine", env.task.step)
env.encoder.encode = timed("embedding", env.encoder.encode)
env.task.expert_command = timed("llm", env.task.expert_command)  # what the simulated tiers read
for tier in env.tiers:
    tier.backend.generate = timed("llm", tier.backend.generate)


def run(measure: bool, n_steps: int) -> dict[str, list[float]]:
    timers.clear()
    done_steps, ep = 0, 0
    while done_steps < n_steps:
        obs, _ = env.reset(seed=ep, options={"task_index": (ep * 11) % 134})
        ep = (ep + 1) % args.episodes
        done = False
        while not done and done_steps < n_steps:
            _current.clear()
            t0 = time.perf_counter()
            action, _ = policy.predict(obs)
            t_router = time.perf_counter() - t0
            t1 = time.perf_counter()
            obs, _, term, trunc, _ = env.step(int(action))
            t_step = time.perf_counter() - t1
            done = term or trunc
            if measure:
                engine, llm, emb = _current["engine"], _current["llm"], _current["embedding"]
                timers["engine"].append(engine)
                timers["llm"].append(llm)
                timers["embedding"].append(emb)
                timers["router"].append(t_router)
                timers["rest"].append(t_step - engine - llm - emb)
                timers["total"].append(t_step + t_router)
            done_steps += 1
    return {k: list(v) for k, v in timers.items()}


def report(name: str, t: dict[str, list[float]]) -> float:
    med = {k: statistics.median(v) * 1000 for k, v in t.items()}
    print(
        f"{name}: steps measured {len(t['total'])}, embedding cache hit rate "
        f"{env.encoder.hit_rate:.3f} (torch threads: {args.threads})"
    )
    print("  component          median ms    mean ms")
    for k in ("engine", "llm", "embedding", "router", "rest", "total"):
        print(f"    {k:<14} {med[k]:>10.3f} {statistics.fmean(t[k]) * 1000:>10.3f}")
    return (med["embedding"] + med["router"] + med["rest"]) / med["engine"]


# --- cold pass (fresh embedding cache), then the same episodes warm -----------------------
env.encoder.clear_cache()
cold = report("cold", run(measure=True, n_steps=args.steps))
env.encoder.hits = env.encoder.misses = 0
warm = report("warm", run(measure=True, n_steps=args.steps))
print("llm = the SIMULATED precision pair (incl. the expert/planner it consults)")
print(f"overhead_ratio_cold={cold:.3f}")
print(f"overhead_ratio={warm:.3f}")
