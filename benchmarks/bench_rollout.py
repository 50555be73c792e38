"""Rollout throughput: routing decisions/s of one env, the batched env, worker processes, Ray
actors, and batched vs sequential generation against a real (CPU vLLM) server. (issue 10)

Every config plays **the same N episodes** (valid_unseen tasks, seeds 0..N-1, at most
``--steps`` decisions each) with the same random router (p_high 0.4; the action of episode k at
step t is drawn from a generator seeded with (k, t)). Same seeds give the same trajectories in
every config, so each does exactly the same work and the ratios compare like with like. The
tiers are the SIMULATED pair for (a)-(d) and the tiny random Qwen3 model on CPU vLLM for (e).

  (a) one env (``gym.make``), the N episodes one after another
  (b) the batched vector env, N episodes, task engines in its own process
  (c) the batched vector env, N episodes, task engines in W worker processes
  (d) W Ray actors, each holding a batched env of N/W of the episodes (dealt round robin, as
      (c)'s slots are dealt to its worker processes)
  (e) the N episodes against vLLM: batched env (each tier's requests in one call, all in
      flight, every tier's call at once) vs N single envs stepped one request at a time. Both modes start cold: each in
      a fresh process, and on an empty server prefix cache (the append-only ALFWorld prompts
      share long prefixes, so whichever mode ran second used to be served from the first
      one's cache): the cache is reset before each mode (``POST /reset_prefix_cache``, the
      server started with ``VLLM_SERVER_DEV_MODE=1``), or, where that fails, the server is
      restarted for the second mode. The method is printed. One short request warms the
      fresh server up before either mode.
  (f) the same pair in-process with the transformers backend (the tiny model in float32, so
      both modes make the same greedy choices): one padded batch per tier and step vs one
      request at a time (with its KV-prefix cache).

Each of (a)-(d) runs in a fresh process (``--only X``), twice over its episodes: **cold** (the
first visit: every step text encoded, every game loaded and translated by that process, every
planner call made) and **warm** (the same episodes again). The encoder share is the encoder's
wall time over the wall time of cold (a).

Run:  python benchmarks/bench_rollout.py            (N=8, W=2, 20 decisions per episode)
      python benchmarks/bench_rollout.py --quick    (a smoke test)
Last lines: ``speedup_batched_http_llm_calls=<sequential/batched time in the tiers' calls>``
(e) (what batching the requests buys by itself), ``speedup_batched_transformers=<batched/sequential>``
(f), ``speedup_workers=<c/a>`` and ``speedup_batched_http=<batched/sequential>`` (cold; targets
on a 2-core machine for the last two: >= 1.7 and >= 3; encoder share <= 0.15).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
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

P_HIGH = 0.4


def task_of(k: int) -> int:
    """Episode k plays valid_unseen game 7k mod 134 (spread over the split)."""
    return (k * 7) % 134


def action(k: int, t: int) -> int:
    """The random router's tier for episode k at decision t: 0 (high) with probability p_high."""
    return 0 if np.random.default_rng([k, t]).random() < P_HIGH else 1


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


# --- (a) one env: the episodes one after another -------------------------------------------------
def play_single(env, episodes: list[int], steps: int) -> int:
    decisions = 0
    for k in episodes:
        env.reset(seed=k, options={"task_index": task_of(k)})
        for t in range(steps):
            _, _, term, trunc, _ = env.step(action(k, t))
            decisions += 1
            if term or trunc:
                break
    return decisions


# --- (b), (c), (d): a batched env over the given episodes, one per slot --------------------------
def play_batched(vec, ks: list[int], steps: int) -> int:
    n = vec.num_envs
    vec.reset(seed=ks, options={"task_index": [task_of(k) for k in ks]})  # slot i: seed ks[i]
    decisions = 0
    for t in range(steps):
        _, _, _, _, info = vec.step(np.array([action(k, t) for k in ks], dtype=np.int64))
        parked = info.get("parked", np.zeros(n, bool)) & info.get("_parked", np.zeros(n, bool))
        stepped = info["_action"] & ~parked.astype(bool)
        decisions += int(stepped.sum())
        if parked.all() or not stepped.any():
            break
    return decisions


def make_vec(num_envs: int, workers: int):
    return gym.make_vec(
        "DMR-ALFWorld-v0",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        workers=workers,
        park_finished=True,  # an episode plays once, then waits for the others
        encoder=SentenceEncoder(),
    )


class RolloutActor:
    """One Ray actor: a batched env over its share of the episodes (dealt round robin, as the
    batched env deals its slots to worker processes)."""

    def __init__(self, episodes: list[int]) -> None:
        configure_torch_threads(1)
        self.vec, self.episodes = make_vec(len(episodes), 0), episodes

    def play(self, steps: int) -> int:
        return play_batched(self.vec, self.episodes, steps)


def timed_twice(play, after_cold=None) -> tuple[float, float, float]:
    """(cold decisions/s, warm decisions/s, cold wall time) of ``play()`` run twice."""
    rates, walls = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        decisions = play()
        walls.append(time.perf_counter() - t0)
        rates.append(decisions / walls[-1])
        if after_cold is not None and len(walls) == 1:
            after_cold()
    return rates[0], rates[1], walls[0]


def run_config(only: str, n: int, w: int, steps: int) -> str:
    """One of (a)-(d) in this (fresh) process; returns its result line."""
    configure_torch_threads(1)
    share = 0.0
    if only == "a":
        env = gym.make("DMR-ALFWorld-v0", encoder=SentenceEncoder())
        timer = Timed(env.unwrapped.encoder, "encode")
        cold, warm, cold_wall = timed_twice(
            lambda: play_single(env, list(range(n)), steps),
            after_cold=lambda: setattr(timer, "cold", timer.total),
        )
        share = timer.cold / cold_wall
        env.close()
    elif only in ("b", "c"):
        vec = make_vec(n, 0 if only == "b" else w)  # workers started (and ready) here
        cold, warm, _ = timed_twice(lambda: play_batched(vec, list(range(n)), steps))
        vec.close()
    else:
        import ray

        ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
        actor = ray.remote(num_cpus=1)(RolloutActor)
        actors = [actor.remote(list(range(a, n, w))) for a in range(w)]
        ray.get([a.__ray_ready__.remote() for a in actors])  # built: env and encoder loaded
        cold, warm, _ = timed_twice(lambda: sum(ray.get([a.play.remote(steps) for a in actors])))
        ray.shutdown()
    return f"RESULT {only} {cold:.4f} {warm:.4f} {share:.4f}"


# --- (e), (f) real tiers: batched vs one request at a time ---------------------------------------
def real_tiers(backend: str, where: str) -> list:
    """Two tiers of the tiny model: (e) on the vLLM server at ``where`` (the same model labelled
    as two precisions), (f) in-process from the model folder ``where`` (bf16 and int4 fake-quant
    weights, computed in float32)."""
    from precision_gym.tiers import PrecisionTier

    if backend == "http":
        from precision_gym.backends.openai_backend import OpenAIBackend

        return [
            PrecisionTier(name, OpenAIBackend(where, "tiny", name=name, timeout_s=120))
            for name in ("bf16", "w4")
        ]
    import torch

    from precision_gym.backends.transformers_backend import TransformersBackend

    return [
        PrecisionTier(name, TransformersBackend(where, precision, 64, dtype=torch.float32))
        for name, precision in (("bf16", "bf16"), ("w4", "int4"))
    ]


def run_real(backend: str, mode: str, where: str, n: int, steps: int) -> str:
    """One mode of (e) or (f) in this (fresh) process; returns its result line."""
    configure_torch_threads(1)
    kwargs = {"latency": "alfworld-qwen3-4b-awq-w4", "encoder": SentenceEncoder()}
    if mode == "batched":
        env = BatchedAgentVectorEnv(
            num_envs=n, tiers=real_tiers(backend, where), park_finished=True, **kwargs
        )
        llm = Timed(env._stepper, "generate_groups")  # the tiers' calls, all tiers of a step
        t0 = time.perf_counter()
        rate = play_batched(env, list(range(n)), steps) / (time.perf_counter() - t0)
    else:
        env = gym.make("DMR-ALFWorld-v0", tiers=real_tiers(backend, where), **kwargs)
        llm = Timed(env.unwrapped._stepper, "generate_groups")
        t0 = time.perf_counter()
        rate = play_single(env, list(range(n)), steps) / (time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    env.close()
    return f"RESULT {backend}:{mode} {rate:.4f} {llm.total:.4f} {wall:.4f}"


def in_fresh_process(only: str, *args: str) -> list[str]:
    """Run ``--only ONLY`` of this file in a new process; the fields of its RESULT line."""
    out = subprocess.run(
        [sys.executable, __file__, "--only", only, *args], capture_output=True, text=True
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        raise SystemExit(f"config {only} failed:\n{out.stderr[-3000:]}")
    return line[-1].split()[2:]


def pair(backend: str, where: str, n: int, steps: int, before_each=None) -> dict[str, list[float]]:
    """``{mode: [decisions/s, seconds in the tiers' calls, wall seconds]}`` of (e) or (f) for
    ``sequential`` and ``batched``, each mode in a fresh process."""
    out = {}
    for mode in ("batched", "sequential"):
        if before_each is not None:
            before_each()
        args = ["--num-envs", str(n), "--steps", str(steps), "--where", where]
        out[mode] = [float(x) for x in in_fresh_process(f"{backend}:{mode}", *args)]
    return out


def cold_prefix_cache(server) -> str:
    """Empty the vLLM server's prefix cache (else restart the server); returns the method."""
    import httpx

    try:
        r = httpx.post(f"{server.base_url}/reset_prefix_cache", timeout=60)
        if r.status_code == 200 and r.json().get("success") is True:
            return "prefix cache reset (POST /reset_prefix_cache) before each mode"
    except (httpx.HTTPError, ValueError):
        pass
    server.stop()
    server.start()
    return "fresh vLLM server before each mode (the prefix-cache reset was refused)"


# --- the run (under the __main__ guard: worker processes import this file) -----------------------
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=8, help="N: episodes (played together)")
    parser.add_argument("--workers", type=int, default=2, help="W: worker processes / Ray actors")
    parser.add_argument("--steps", type=int, default=20, help="decisions per episode (at most)")
    parser.add_argument("--http-steps", type=int, default=6, help="(e), (f): decisions per episode")
    parser.add_argument("--no-ray", action="store_true", help="skip (d)")
    parser.add_argument("--no-vllm", action="store_true", help="skip (e)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--no-transformers", action="store_true", help="skip (f)")
    modes = [f"{b}:{m}" for b in ("http", "transformers") for m in ("batched", "sequential")]
    parser.add_argument("--only", choices=[*"abcd", *modes], help=argparse.SUPPRESS)  # here
    parser.add_argument("--where", help=argparse.SUPPRESS)  # (e): server URL, (f): model folder
    args = parser.parse_args()
    if args.quick:
        args.num_envs, args.steps, args.http_steps = 2, 3, 2
    N, W = args.num_envs, args.workers
    if args.only in modes:
        print(run_real(*args.only.split(":"), args.where, N, args.steps), flush=True)
        sys.exit(0)
    if args.only:
        print(run_config(args.only, N, W, args.steps), flush=True)
        sys.exit(0)

    results: dict[str, tuple[float, float, float]] = {}
    notes = {"d": "skipped (--no-ray)"}
    configs = "abc" + ("" if args.no_ray else "d")
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            configs, notes["d"] = "abc", "skipped: ray is not installed (the ray extra)"
    for only in configs:  # each in a fresh process: cold means cold
        args_ = ["--num-envs", str(N), "--workers", str(W), "--steps", str(args.steps)]
        cold, warm, share = in_fresh_process(only, *args_)
        results[only] = (float(cold), float(warm), float(share))

    tiny_note = "tiny random Qwen3 (2 layers): plumbing speed, not results"
    nan = [math.nan] * 3
    http_note, http = "skipped (--no-vllm)", {"sequential": nan, "batched": nan}
    local_note, local = "skipped (--no-transformers)", {"sequential": nan, "batched": nan}
    with tempfile.TemporaryDirectory() as tmp:
        model = None
        if not (args.no_vllm and args.no_transformers):
            from precision_gym.serving import build_tiny_qwen3

            model = build_tiny_qwen3(Path(tmp) / "tiny-qwen3")
        if not args.no_transformers:
            local = pair("transformers", str(model), N, args.http_steps)
            local_note = f"in-process float32, {tiny_note}"
        if not args.no_vllm:
            from precision_gym.serving import VLLMServer, vllm_python

            python = vllm_python()
            if python is None:
                http_note = "skipped: no vLLM venv (scripts/setup_vllm_cpu.sh)"
            else:
                dev = {"VLLM_SERVER_DEV_MODE": "1"}  # serves POST /reset_prefix_cache
                server = VLLMServer(python, model, Path(tmp) / "vllm.log", extra_env=dev)
                server.start()
                try:
                    from precision_gym.backends.base import GenerationRequest, SamplingParams
                    from precision_gym.backends.openai_backend import OpenAIBackend

                    warm_up = OpenAIBackend(server.base_url, "tiny", timeout_s=120)
                    warm_up.generate([GenerationRequest("Hello", SamplingParams(max_tokens=4))])
                    warm_up.close()
                    method: list[str] = []
                    http = pair(
                        "http",
                        server.base_url,
                        N,
                        args.http_steps,
                        before_each=lambda: method.append(cold_prefix_cache(server)),
                    )
                    http_note = f"CPU vLLM, {tiny_note}; cold: {'; '.join(sorted(set(method)))}"
                finally:
                    server.stop()

    # --- report --------------------------------------------------------------------------------
    labels = {
        "a": "(a) one env",
        "b": f"(b) batched N={N}, 1 process",
        "c": f"(c) batched N={N}, {W} worker processes",
        "d": f"(d) N={N} over {W} Ray actors",
    }
    print(f"routing decisions/s: {N} episodes x <= {args.steps} decisions, random router")
    print(f"p_high={P_HIGH}, SIMULATED tiers, DMR-ALFWorld-v0 valid_unseen")
    print(f"{'config':<40} {'cold':>8} {'warm':>8} {'cold/(a)':>9} {'warm/(a)':>9}")
    a_cold, a_warm = results["a"][0], results["a"][1]
    for key, label in labels.items():
        if key not in results:
            print(f"{label:<40} {notes[key]}")
            continue
        c, w, _ = results[key]
        print(f"{label:<40} {c:>8.2f} {w:>8.2f} {c / a_cold:>9.2f} {w / a_warm:>9.2f}")
    print(f"encoder share of a cold step in (a): {results['a'][2]:.3f}  (target <= 0.15)")
    for label, rows, note in (
        ("(e) HTTP", http, http_note),
        ("(f) transformers", local, local_note),
    ):
        seq, bat = rows["sequential"], rows["batched"]
        print(f"{label}, N={N}: sequential {seq[0]:.2f} /s, batched {bat[0]:.2f} /s  [{note}]")
        print(
            f"    in the tiers' calls: sequential {seq[1]:.1f} of {seq[2]:.1f} s, batched "
            f"{bat[1]:.1f} of {bat[2]:.1f} s (the rest: game loads, engine steps, encoder)"
        )
    # the LLM calls alone: what batching itself buys, without the work it cannot shorten
    print(f"speedup_batched_http_llm_calls={http['sequential'][1] / http['batched'][1]:.2f}")
    print(f"speedup_batched_transformers={local['batched'][0] / local['sequential'][0]:.2f}")
    print(f"speedup_workers={results['c'][0] / a_cold:.2f}")
    print(f"speedup_batched_http={http['batched'][0] / http['sequential'][0]:.2f}")
