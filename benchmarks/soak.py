"""Soak test: does a long run leak memory? (issue 13 benchmark)

Runs N routing decisions (default 10,000) of a Transformer router on the SIMULATED
precision pair in ONE process, episode after episode, and prints the process RSS every
1,000 decisions. After a warm-up (caches filling, allocator settling), RSS must stay flat:

    rss_growth = (RSS at the end - RSS after warm-up) / RSS after warm-up     (target < 5%)

Run:  python benchmarks/soak.py [--env DMR-WebShop-v0] [--decisions 10000] [--warmup 2000]
The last two lines are ``rss_growth=<x>%`` and ``PASS`` / ``FAIL``.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared/alfworld/json_2.1.1").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared/alfworld")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gymnasium as gym  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import precision_gym  # noqa: E402, F401
from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy  # noqa: E402
from precision_gym.threads import configure_torch_threads  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--env", default="DMR-WebShop-v0", help="registered env id")
parser.add_argument("--split", default=None, help="task split (default: the task's train split)")
parser.add_argument("--decisions", type=int, default=10_000, help="routing decisions in total")
parser.add_argument("--every", type=int, default=1_000, help="print RSS every this many")
parser.add_argument("--warmup", type=int, default=2_000, help="decisions before the baseline")
parser.add_argument("--limit", type=float, default=5.0, help="allowed RSS growth after warm-up, %")
parser.add_argument(
    "--seed",
    type=int,
    default=0,
    help="episode seeds are derived from it (seed x 1,000,003 + episode)",
)
args = parser.parse_args()
if not 0 < args.warmup < args.decisions:
    parser.error(f"--warmup must be in (0, --decisions), got {args.warmup}")
configure_torch_threads()


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the env and an untrained Transformer router (its forward pass runs every decision) ---
env = gym.make(args.env)
u = env.unwrapped
split = args.split or u.task.split_for("train")
n_tasks = u.task.num_tasks(split)
config = RouterConfig(
    embed_dim=u.embedding_dim,
    max_len=u.max_history,
    d_model=32,
    n_layers=2,
    n_heads=2,
    n_tiers=int(env.action_space.n),
)
policy = TransformerRouterPolicy(TransformerRouter(config))
print(f"{args.env} / {split} ({n_tasks} tasks), SIMULATED tiers {u.tier_names}: {u.simulated}")

# --- the soak: episode after episode until the decision budget is spent -------------------
decisions, episodes, baseline = 0, 0, None
t0 = time.perf_counter()
rows = []
bar = tqdm(total=args.decisions, desc="soak", unit="dec", mininterval=5)
while decisions < args.decisions:
    obs, _ = env.reset(
        seed=args.seed * 1_000_003 + episodes,
        options={"split": split, "task_index": episodes % n_tasks},
    )
    episodes += 1
    done = False
    while not done and decisions < args.decisions:
        action, _ = policy.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(int(action))
        done = terminated or truncated
        decisions += 1
        bar.update()
        if decisions % args.every == 0:
            gc.collect()
            rss = rss_mib()
            if decisions == args.warmup:
                baseline = rss
            cache = u.encoder.cache_info()
            rows.append((decisions, rss))
            tqdm.write(
                f"decisions {decisions:>6}  episodes {episodes:>5}  RSS {rss:8.1f} MiB  "
                f"embedding cache {int(cache['size']):>6}/{int(cache['capacity'])}  "
                f"{time.perf_counter() - t0:7.0f} s"
            )
bar.close()
env.close()

if baseline is None:  # --warmup not a multiple of --every: the first row after it
    baseline = next(r for d, r in rows if d >= args.warmup)
final = rows[-1][1]
growth = 100.0 * (final - baseline) / baseline
print(f"decisions {decisions}, episodes {episodes}, wall {time.perf_counter() - t0:.0f} s")
print(f"RSS after warm-up ({args.warmup} decisions) {baseline:.1f} MiB, at the end {final:.1f} MiB")
print(f"rss_growth={growth:.2f}%")
print("PASS" if growth < args.limit else "FAIL", f"(target < {args.limit:g}%)")
