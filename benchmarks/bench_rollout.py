"""Rollout throughput: routing decisions/s of one env, the batched env, worker processes, Ray
actors, and batched vs sequential generation against a real (CPU vLLM) server. (issue 10)

Every figure comes from this one run, side by side, so ratios are meaningful on a noisy,
shared machine. The router is random (p_high 0.4, seeded); the tiers are the SIMULATED pair
for (a)-(d) and the tiny random Qwen3 model served by CPU vLLM for (e).

  (a) one env (``gym.make``), episodes one after another
  (b) the batched vector env, N episodes, task engines in this process
  (c) the batched vector env, N episodes over W worker processes
  (d) N episodes over W Ray actors, each holding a batched env of N/W episodes
  (e) N episodes against vLLM: batched env (one request per episode, all in flight) vs the
      same N episodes stepped as N single envs, one request at a time

Each of (a)-(d) runs twice over the same episodes: **cold** (a fresh embedding cache: every
text is encoded on first visit; every game loaded for the first time by that process) and
**warm** (the same episodes again). The encoder share is the encoder's wall time over the
step wall time, cold, in (a).

Run:  python benchmarks/bench_rollout.py            (N=8, W=2, 160 decisions per config)
      python benchmarks/bench_rollout.py --quick    (a smoke test: seconds)
Last lines: ``speedup_workers=<c/a>`` and ``speedup_batched_http=<batched/sequential>``
(cold; targets >= 1.7 and >= 3 on a 2-core machine, encoder share <= 0.15).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared/alfworld/json_2.1.1").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared/alfworld")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import precision_gym  # noqa: E402, F401
from precision_gym.embedding import SentenceEncoder  # noqa: E402
from precision_gym.envs.vector import BatchedAgentVectorEnv  # noqa: E402
from precision_gym.threads import configure_torch_threads  # noqa: E402


def router_actions(rng: np.random.Generator, n: int, p_high: float) -> np.ndarray:
    """The random router: tier 0 (high) with probability p_high."""
    return np.where(rng.random(n) < p_high, 0, 1).astype(np.int64)


class Timed:
    """Adds up the wall time of calls to ``obj.name`` (here: the encoder)."""

    def __init__(self, obj: object, name: str) -> None:
        self.total, fn = 0.0, getattr(obj, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total += time.perf_counter() - t0

        setattr(obj, name, wrapper)


# --- (a) one env ------------------------------------------------------------------------------
def run_single(env, decisions: int, tasks: list[int], p_high: float) -> float:
    """Decisions/s of one env playing ``tasks`` in order (resets included: rollout work)."""
    rng = np.random.default_rng(0)
    done_decisions, k = 0, 0
    t0 = time.perf_counter()
    while done_decisions < decisions:
        env.reset(seed=k, options={"task_index": tasks[k % len(tasks)]})
        k += 1
        done = False
        while not done and done_decisions < decisions:
            _, _, term, trunc, _ = env.step(int(router_actions(rng, 1, p_high)[0]))
            done_decisions += 1
            done = term or trunc
    return decisions / (time.perf_counter() - t0)


# --- (b), (c) the batched env ------------------------------------------------------------------
def run_batched(vec, decisions: int, tasks: list[int], p_high: float, first_task: int = 0) -> float:
    """Decisions/s of a batched env; slot i starts on task ``tasks[first_task + i]``."""
    rng = np.random.default_rng(0)
    n = vec.num_envs
    start = [tasks[(first_task + i) % len(tasks)] for i in range(n)]
    t0 = time.perf_counter()
    vec.reset(seed=first_task, options={"task_index": start})
    done_decisions = 0
    while done_decisions < decisions:
        _, _, _, _, info = vec.step(router_actions(rng, n, p_high))
        done_decisions += int(np.sum(info.get("_action", np.zeros(n, bool))))
    return done_decisions / (time.perf_counter() - t0)


def make_vec(workers: int, encoder: SentenceEncoder, num_envs: int):
    return gym.make_vec(
        "DMR-ALFWorld-v0",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        workers=workers,
        encoder=encoder,
    )


# --- (d) Ray actors ----------------------------------------------------------------------------
class RolloutActor:
    """One Ray actor: a batched env over its share of the N episodes."""

    def __init__(self, num_envs: int, first_task: int, tasks: list[int], p_high: float) -> None:
        configure_torch_threads(1)
        self.vec = make_vec(0, SentenceEncoder(), num_envs)
        self.args = (tasks, p_high, first_task)

    def run(self, decisions: int) -> float:
        return run_batched(self.vec, decisions, *self.args)


# --- (e) a real server: batched vs one request at a time ---------------------------------------
def run_http(
    base_url: str, n: int, steps: int, tasks: list[int], p_high: float
) -> tuple[float, float]:
    from precision_gym.backends.openai_backend import OpenAIBackend
    from precision_gym.tiers import PrecisionTier

    def tiers():  # two tiers on one server: the same model, labelled as two precisions
        return [
            PrecisionTier(n, OpenAIBackend(base_url, "tiny", name=n, timeout_s=120))
            for n in ("bf16", "w4")
        ]

    kwargs = {"latency": "alfworld-qwen3-4b-awq-w4", "max_steps": 50}
    rng = np.random.default_rng(0)
    plan = [router_actions(rng, n, p_high) for _ in range(steps)]
    # sequential: N single envs, one request at a time
    enc, ts = SentenceEncoder(), tiers()
    envs = [gym.make("DMR-ALFWorld-v0", tiers=ts, encoder=enc, **kwargs) for _ in range(n)]
    for i, e in enumerate(envs):
        e.reset(seed=i, options={"task_index": tasks[i % len(tasks)]})
    t0 = time.perf_counter()
    done = 0
    for actions in plan:
        for e, a in zip(envs, actions, strict=True):
            if not e.unwrapped._episode.done:
                e.step(int(a))
                done += 1
    sequential = done / (time.perf_counter() - t0)
    for e in envs:
        e.close()
    # batched: one vector env, each tier's requests in one call, all in flight
    vec = BatchedAgentVectorEnv(num_envs=n, tiers=tiers(), encoder=SentenceEncoder(), **kwargs)
    vec.reset(seed=0, options={"task_index": [tasks[i % len(tasks)] for i in range(n)]})
    t0 = time.perf_counter()
    done = 0
    for actions in plan:
        _, _, _, _, info = vec.step(actions)
        done += int(np.sum(info["_action"]))
    batched = done / (time.perf_counter() - t0)
    vec.close()
    return sequential, batched


# --- the run (under the __main__ guard: worker processes import this file) ----------------
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=8, help="N: episodes stepped together")
    parser.add_argument("--workers", type=int, default=2, help="W: worker processes / Ray actors")
    parser.add_argument("--decisions", type=int, default=160, help="router decisions per config")
    parser.add_argument("--tasks", type=int, default=20, help="valid_unseen tasks cycled through")
    parser.add_argument("--p-high", type=float, default=0.4, help="random router's P(high)")
    parser.add_argument("--http-steps", type=int, default=6, help="(e): steps per episode")
    parser.add_argument("--no-ray", action="store_true", help="skip (d)")
    parser.add_argument("--no-vllm", action="store_true", help="skip (e)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.num_envs, args.decisions, args.tasks, args.http_steps = 2, 6, 2, 2
    configure_torch_threads(1)
    N, W, P = args.num_envs, args.workers, args.p_high
    TASKS = [(k * 7) % 134 for k in range(args.tasks)]  # spread over valid_unseen's 134 games

    results: dict[str, tuple[float, float]] = {}

    env = gym.make("DMR-ALFWorld-v0", encoder=SentenceEncoder())
    timer = Timed(env.unwrapped.encoder, "encode")
    t_start = time.perf_counter()
    cold = run_single(env, args.decisions, TASKS, P)
    encoder_share = timer.total / (time.perf_counter() - t_start)
    results["a"] = (cold, run_single(env, args.decisions, TASKS, P))
    env.close()

    for key, workers in (("b", 0), ("c", W)):
        vec = make_vec(workers, SentenceEncoder(), N)
        results[key] = tuple(run_batched(vec, args.decisions, TASKS, P) for _ in range(2))
        vec.close()

    ray_note = "skipped (--no-ray)"
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            ray, ray_note = None, "skipped: ray is not installed (pip install 'precision-gym[ray]')"
        if ray is not None:
            ray.init(num_cpus=W, include_dashboard=False, log_to_driver=False)
            share = N // W
            actor = ray.remote(num_cpus=1)(RolloutActor)
            actors = [actor.remote(share, a * share, TASKS, P) for a in range(W)]
            ray.get([a.__ray_ready__.remote() for a in actors])  # built: env, encoder loaded
            per_actor = args.decisions // W
            rates = []
            for _phase in ("cold", "warm"):
                t0 = time.perf_counter()
                ray.get([a.run.remote(per_actor) for a in actors])
                rates.append(per_actor * W / (time.perf_counter() - t0))
            results["d"] = (rates[0], rates[1])
            for a in actors:
                ray.kill(a)
            ray.shutdown()
            ray_note = f"{W} actors x {share} episodes"

    http_note, http = "skipped (--no-vllm)", (math.nan, math.nan)
    if not args.no_vllm:
        from precision_gym.serving import VLLMServer, build_tiny_qwen3, vllm_python

        python = vllm_python()
        if python is None:
            http_note = "skipped: no vLLM venv (scripts/setup_vllm_cpu.sh)"
        else:
            with tempfile.TemporaryDirectory() as tmp:
                model = build_tiny_qwen3(Path(tmp) / "tiny-qwen3")
                server = VLLMServer(python, model, Path(tmp) / "vllm.log", name="tiny").start()
                try:
                    http = run_http(server.base_url, N, args.http_steps, TASKS, P)
                    http_note = (
                        "CPU vLLM, tiny random Qwen3 (2 layers): plumbing speed, not results"
                    )
                finally:
                    server.stop()

    # --- report -------------------------------------------------------------------------------------
    labels = {
        "a": "(a) one env",
        "b": f"(b) batched N={N}, 1 process",
        "c": f"(c) batched N={N}, {W} worker processes",
        "d": f"(d) N={N} over {W} Ray actors",
    }
    print(f"routing decisions/s, random router p_high={args.p_high}, SIMULATED tiers, ALFWorld")
    print(f"{'config':<40} {'cold':>8} {'warm':>8} {'cold/(a)':>9}")
    for key, label in labels.items():
        if key not in results:
            print(f"{label:<40} {ray_note}")
            continue
        c, w = results[key]
        print(f"{label:<40} {c:>8.2f} {w:>8.2f} {c / results['a'][0]:>9.2f}")
    print(f"encoder share of a cold step in (a): {encoder_share:.3f}  (target <= 0.15)")
    print(f"(e) HTTP, N={N}: sequential {http[0]:.2f} /s, batched {http[1]:.2f} /s  [{http_note}]")
    print(f"speedup_workers={results['c'][0] / results['a'][0]:.2f}")
    print(f"speedup_batched_http={http[1] / http[0]:.2f}")
