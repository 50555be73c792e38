"""ALFWorld's engine with and without precision-gym's memos: speed, and the same episodes.

TextWorld's PDDL engine parses every admissible command's text template again at every step
and deep-copies its derivation contexts (``precision_gym.tasks.textworld_memo``); the expert's
planner searches again for a state another task of the same process has planned
(``precision_gym.tasks.alfworld._SHARED_PLANS``). Three measurements, each mode in the same
kind of fresh process, alternated ``--repeats`` times on this machine in one run:

  (1) engine: ``ALFWorldTask.reset`` + random admissible commands on ``--games`` valid_unseen
      games (every task type), TextWorld as shipped vs with the memo; every observation,
      admissible command list and win flag is compared.
  (2) GRPO rollouts: ``GRPOTrainer.sample_batch`` for ``--updates`` updates (4 tasks x 4
      trajectories each, ``--init-checkpoint``'s router or a fresh one, the SIMULATED bf16/w4
      pair, seed 0) with both memos
      off ("shipped") and on ("memo"): routing decisions per second, end to end (game loads,
      engine, simulated tiers and their planner, encoder, router). The batches (actions,
      returns, episode times) must be identical in every run.
  (3) with ``--init-checkpoint``: that router calibrated (``training.calibrate``, on a copy)
      on ``--calib-episodes`` valid_train episodes at K = 0.2, 0.4, 0.7 with 5 refinement
      passes each (the same episodes replayed at each candidate threshold), the planner's
      answers shared between the process's tasks ("shared") or not ("alone"), the TextWorld
      memo on in both: wall time, planner searches, and the same thresholds.

Run:  python benchmarks/bench_engine.py            (24 games x 20 commands; 8 updates; 2 repeats)
      python benchmarks/bench_engine.py --quick    (a smoke test)
      python benchmarks/bench_engine.py --init-checkpoint runs/klst/router.pt --sample-budget 0.7
Last lines: ``same_episodes=True``, ``speedup_engine=<shipped/memo wall>``,
``speedup_rollout_without_searches=<...>`` (the planner's searches' wall time taken out: its
runaway searches run to a CPU-time bound, 30 s each, and dominate a derailing batch) and
``speedup_rollout=<memo/shipped decisions per second>`` (medians over the repeats), and with
``--init-checkpoint`` first ``speedup_calibration_shared_plans=<alone/shared wall>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared/alfworld/json_2.1.1").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared/alfworld")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def engine_pass(task: object, games: list[int], commands: int) -> list[tuple]:
    """Reset each game and play ``commands`` random admissible commands (seeded per game)."""
    records = []
    for index in games:
        rng = random.Random(index)
        obs = task.reset("valid_unseen", index)
        records.append((obs.text, list(obs.admissible_commands), obs.won))
        for _ in range(commands):
            if obs.done:
                break
            command = rng.choice(obs.admissible_commands)
            obs = task.step(command)
            records.append((command, obs.text, list(obs.admissible_commands), obs.won))
    return records


def run_engine(args: argparse.Namespace) -> dict:
    """(1), in this process: shipped and memo passes alternated over the same games."""
    from precision_gym.tasks import textworld_memo
    from precision_gym.tasks.alfworld import TASK_TYPES, ALFWorldTask, task_type_of

    task = ALFWorldTask()
    files = task.games("valid_unseen")
    by_type = {t: [i for i, f in enumerate(files) if task_type_of(f) == t] for t in TASK_TYPES}
    rounds = max(len(v) for v in by_type.values())  # every task type in turn
    dealt = [by_type[t][k] for k in range(rounds) for t in TASK_TYPES if k < len(by_type[t])]
    games = dealt[: args.games]
    task.warm_up()
    engine_pass(task, games[:1], 1)  # TextWorld's imports and first translations: not timed
    walls: dict[str, list[float]] = {"shipped": [], "memo": []}
    digests = set()
    for _ in range(args.repeats):
        for mode in ("shipped", "memo"):
            start = time.perf_counter()
            if mode == "shipped":
                with textworld_memo.disabled():  # the memo comes back with empty caches
                    records = engine_pass(task, games, args.commands)
            else:
                records = engine_pass(task, games, args.commands)
            walls[mode].append(time.perf_counter() - start)
            digests.add(digest(records))
    steps = len(records)
    return {"walls": walls, "digests": sorted(digests), "records": steps, "games": len(games)}


def run_rollout(args: argparse.Namespace) -> dict:
    """(2), in this (fresh) process, in mode ``args.only``."""
    from precision_gym.threads import configure_torch_threads

    configure_torch_threads(1)
    import precision_gym.tasks.alfworld as alfworld
    from precision_gym.tasks import textworld_memo
    from training.grpo import GRPOConfig, GRPOTrainer

    shipped = args.only == "shipped"
    if shipped:  # no plans shared between tasks; TextWorld as shipped (below)
        alfworld._SHARED_PLANS = alfworld._LRU(0)
    searches = {"n": 0, "wall": 0.0}
    bounded = alfworld.call_with_timeout

    def timed_search(*a: object, **k: object) -> object:  # the planner's searches, timed
        start = time.perf_counter()
        try:
            return bounded(*a, **k)
        finally:
            searches["n"] += 1
            searches["wall"] += time.perf_counter() - start

    alfworld.call_with_timeout = timed_search
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            init_checkpoint=args.init_checkpoint, sample_budget=args.sample_budget,
            max_updates=args.updates, eval_every=0, keep_best=False, cost_weight=0.5,
            tasks_per_batch=args.tasks_per_batch, group_size=args.group_size,
            env_kwargs={"max_steps": args.max_steps},
            calibration_episodes=0, out=out, progress=False, tensorboard=False, seed=0,
        )  # fmt: skip
        with textworld_memo.disabled() if shipped else contextlib.nullcontext():
            trainer = GRPOTrainer(cfg)
            start = time.perf_counter()
            batches = [trainer.sample_batch(u) for u in range(1, args.updates + 1)]
            wall = time.perf_counter() - start
        trainer.close()
    record = [
        [b.actions.tolist(), b.returns.round(9).tolist(), b.episode_time_s.round(9).tolist()]
        for b in batches
    ]
    decisions = sum(len(b.actions) for b in batches)
    return {"wall": wall, "decisions": decisions, "digest": digest(record), **{
        "searches": searches["n"], "search_wall": searches["wall"]}}  # fmt: skip


def run_calibration(args: argparse.Namespace) -> dict:
    """(3), in this (fresh) process: ``--init-checkpoint``'s router calibrated (a copy),
    planner answers shared between tasks (mode "shared") or not ("alone")."""
    import shutil

    from precision_gym.threads import configure_torch_threads

    configure_torch_threads(1)
    import gymnasium as gym

    import precision_gym  # noqa: F401
    import precision_gym.tasks.alfworld as alfworld
    from training.calibrate import calibrate_router

    if args.only == "alone":
        alfworld._SHARED_PLANS = alfworld._LRU(0)
    searches = {"n": 0}
    bounded = alfworld.call_with_timeout

    def counted(*a: object, **k: object) -> object:
        searches["n"] += 1
        return bounded(*a, **k)

    alfworld.call_with_timeout = counted
    with tempfile.TemporaryDirectory() as out:
        router = Path(out) / "router.pt"
        shutil.copy(args.init_checkpoint, router)
        env = gym.make("DMR-ALFWorld-v0")
        start = time.perf_counter()
        report = calibrate_router(
            router, env, episodes=args.calib_episodes, budgets=(0.2, 0.4, 0.7),
            out_dir=Path(out) / "calibration", progress=False, refine_iters=5,
        )  # fmt: skip
        wall = time.perf_counter() - start
        env.close()
    record = [report.thresholds, report.refinement, report.pool_success_rate]
    return {"wall": wall, "searches": searches["n"], "digest": digest(record)}


def in_fresh_process(only: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--only", only, "--games", str(args.games),
           "--commands", str(args.commands), "--updates", str(args.updates),
           "--repeats", str(args.repeats), "--tasks-per-batch", str(args.tasks_per_batch),
           "--group-size", str(args.group_size), "--max-steps", str(args.max_steps)]  # fmt: skip
    if args.init_checkpoint:
        cmd += ["--init-checkpoint", args.init_checkpoint]
        cmd += ["--calib-episodes", str(args.calib_episodes)]
    if args.sample_budget is not None:
        cmd += ["--sample-budget", str(args.sample_budget)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the {only!r} process failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--games", type=int, default=24, help="(1): valid_unseen games")
    parser.add_argument("--commands", type=int, default=20, help="(1): random commands per game")
    parser.add_argument("--updates", type=int, default=8, help="(2): GRPO batches per process")
    parser.add_argument("--tasks-per-batch", type=int, default=4, help="(2): tasks per update")
    parser.add_argument("--group-size", type=int, default=4, help="(2): trajectories per task")
    parser.add_argument("--max-steps", type=int, default=50, help="(2): decisions per episode")
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the two modes")
    parser.add_argument(
        "--init-checkpoint",
        default=None,
        help="(2): router to roll out (a KL-ST router.pt; None = a fresh "
        "router, which routes about half the steps low and derails often)",
    )
    parser.add_argument(
        "--calib-episodes", type=int, default=16, help="(3): calibration episodes (valid_train)"
    )
    parser.add_argument(
        "--sample-budget",
        type=float,
        default=None,
        help="(2): sample around the router's calibrated budget K",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--only", choices=["engine", "shipped", "memo", "alone", "shared"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.quick:
        args.games, args.commands, args.updates, args.repeats = 6, 4, 1, 1
        args.tasks_per_batch, args.group_size, args.max_steps = 1, 2, 3
    for name in ("games", "commands", "updates", "repeats", "tasks_per_batch", "group_size",
                 "max_steps"):  # fmt: skip
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.only == "engine":
        print(json.dumps(run_engine(args)))
        return
    if args.only in ("shipped", "memo"):
        print(json.dumps(run_rollout(args)))
        return
    if args.only in ("alone", "shared"):
        print(json.dumps(run_calibration(args)))
        return

    print(f"(1) engine: {args.games} valid_unseen games x {args.commands} random commands, "
          f"{args.repeats} alternations in one process")  # fmt: skip
    engine = in_fresh_process("engine", args)
    for mode, walls in engine["walls"].items():
        print(f"    {mode:8s} wall s: {', '.join(f'{w:.2f}' for w in walls)}")
    print(
        f"    {engine['records']} observations per pass; distinct passes: {len(engine['digests'])}"
    )

    router = args.init_checkpoint or "a fresh router"
    print(f"(2) GRPO rollouts (SIMULATED pair, {router}): {args.updates} updates x "
          f"{args.tasks_per_batch} tasks x {args.group_size} episodes of <= {args.max_steps} "
          f"decisions, each mode in a fresh process, {args.repeats} alternations")  # fmt: skip
    rollouts: dict[str, list[dict]] = {"shipped": [], "memo": []}
    for _ in range(args.repeats):
        for mode in ("shipped", "memo"):
            row = in_fresh_process(mode, args)
            rollouts[mode].append(row)
            rest = row["wall"] - row["search_wall"]
            print(f"    {mode:8s} {row['decisions']} decisions in {row['wall']:.1f} s: "
                  f"{row['decisions'] / row['wall']:.2f} decisions/s; planner searches "
                  f"{row['searches']} in {row['search_wall']:.1f} s; the rest "
                  f"{row['decisions'] / rest:.2f} decisions/s")  # fmt: skip
    calibrations: dict[str, list[dict]] = {"alone": [], "shared": []}
    if args.init_checkpoint:
        print(f"(3) calibration (SIMULATED pair): {args.calib_episodes} valid_train episodes, K = 0.2, 0.4, 0.7, "
              "5 refinement passes each; planner answers not shared (alone) and shared, "
              "TextWorld memo on in both")  # fmt: skip
        for _ in range(args.repeats):
            for mode in ("alone", "shared"):
                row = in_fresh_process(mode, args)
                calibrations[mode].append(row)
                print(f"    {mode:8s} {row['wall']:.1f} s, {row['searches']} planner searches")
    calibrated = {r["digest"] for rows in calibrations.values() for r in rows}
    same = (
        len(calibrated) <= 1
        and len(engine["digests"]) == 1
        and (len({r["digest"] for rows in rollouts.values() for r in rows}) == 1)
    )
    rate = {m: statistics.median(r["decisions"] / r["wall"] for r in rows)
            for m, rows in rollouts.items()}  # fmt: skip
    walls = {m: statistics.median(w) for m, w in engine["walls"].items()}
    print(f"same_episodes={same}")
    if args.init_checkpoint:
        calib = {m: statistics.median(r["wall"] for r in rows) for m, rows in calibrations.items()}
        print(f"speedup_calibration_shared_plans={calib['alone'] / calib['shared']:.2f}")
    print(f"speedup_engine={walls['shipped'] / walls['memo']:.2f}")
    rest = {m: statistics.median(r["decisions"] / (r["wall"] - r["search_wall"]) for r in rows)
            for m, rows in rollouts.items()}  # fmt: skip
    print(f"speedup_rollout_without_searches={rest['memo'] / rest['shipped']:.2f}")
    print(f"speedup_rollout={rate['memo'] / rate['shipped']:.2f}")
    if not same:
        raise SystemExit("the memos changed an episode: see the digests above")


if __name__ == "__main__":
    main()
