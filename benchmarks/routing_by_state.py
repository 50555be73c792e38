"""Where routers put their high-precision calls: live states against derailed ones (SIMULATED).

On the simulated pair the low tier errs at hashed critical states, which no router can see;
what a router can see is whether the episode has derailed (it loops, and reads "Nothing
happens."), and once it has, every tier errs alike, so a high call there only adds time. The
kind oracle (every live step high, derailed states low) beats KL-ST's curve at matched HP
(``matched_hp.py``); this script asks whether a router has learnt that ranking. Read top to
bottom:

1. load the KL-ST router and every scorer before any episode: GRPO run folders
   (``--grpo-run [NAME=]DIR``: the router its training ended with, at its last sampling
   operating point, ``training.grpo.last_router``) and router files (``--router
   NAME=PATH[#K]``: a ``TransformerRouterPolicy`` file, at its calibrated K if given);
2. on each seed's episodes (``--split``, ``--episodes`` tasks), KL-ST at ``--threshold``
   plays; at every decision each scorer (KL-ST first) gives its ``p(high)`` of the same state
   and the simulator labels the state live or derailed (derailed, or nothing left to do:
   ``agents.KindOracleRouter``'s label). So every scorer is judged on the same states, and a
   seed's states are stored in ``--out``/states_s<seed>.json (a rerun reuses them);
3. print per scorer: the AUC of ``p(high)`` separating live from derailed states (1: every
   live state above every derailed one, the kind oracle's ranking; 0.5: none), mean
   ``p(high)`` on each, and at the scorer's own threshold the share of live and of derailed
   states it would send high; then each scorer minus KL-ST in AUC with a 95% bootstrap CI
   over tasks (a task's states resampled together);
4. draw ``routing_by_state.png`` (each scorer's ``p(high)`` on live and on derailed states)
   and write ``results.json``.

    python benchmarks/routing_by_state.py --klst runs/klst/router.pt --grpo-run runs/grpo/s0 \\
        --seeds 0 --out runs/routing_by_state
    python benchmarks/routing_by_state.py --quick --out /tmp/rbs   # smoke test: WebShop, 6 tasks

It reads the simulator's state, so it needs SIMULATED tiers; its figures are simulated.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared" / "alfworld").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared" / "alfworld")

#: an untrained router sends nearly all of WebShop's states high at 0.5; at 0.99 it plays low
#: and derails, so both labels occur in 6 tasks
QUICK = ["--env-id", "DMR-WebShop-v0", "--split", "test", "--episodes", "6", "--seeds", "0",
         "--threshold", "0.99", "--n-boot", "200"]  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="DMR-ALFWorld-v0", help="registered env id")
    p.add_argument("--klst", help="the KL-ST router.pt that plays the episodes and scores first")
    p.add_argument("--threshold", type=float, default=0.08,
                   help="KL-ST's threshold on p(high) while it plays (its operating point)")  # fmt: skip
    p.add_argument("--grpo-run", action="append", default=[],
                   help="[NAME=]DIR (repeat): a train-grpo --out folder; its last router scores "
                   "(NAME: its row, default 'GRPO s<seed>')")  # fmt: skip
    p.add_argument("--router", action="append", default=[],
                   help="NAME=PATH[#K] (repeat): a router.pt file that scores, at its "
                   "calibrated K if given")  # fmt: skip
    p.add_argument("--split", default="valid_unseen", help="split the episodes come from")
    p.add_argument("--episodes", type=int, default=0, help="tasks per seed (0 = all)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated episode seeds")
    p.add_argument("--n-boot", type=int, default=2_000, help="bootstrap resamples")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    p.add_argument("--out", help="folder for states_s<seed>.json, results.json and the PNG")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: WebShop, an untrained tiny router as KL-ST and scorer, "
                   "6 tasks")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args = p.parse_args([*QUICK, *argv])  # flags given override the quick ones
    if not args.out:
        raise SystemExit("--out is required: the folder for the states, results.json and PNG")
    if not args.quick and not args.klst:
        raise SystemExit("--klst is required: the KL-ST router.pt that plays the episodes")
    if not 0.0 < args.threshold < 1.0:
        raise SystemExit(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.episodes < 0 or args.jobs < 1 or args.n_boot < 1:
        raise SystemExit(f"expected --episodes >= 0, --jobs >= 1 and --n-boot >= 1, got "
                         f"{args.episodes}, {args.jobs} and {args.n_boot}")  # fmt: skip
    try:
        args.seeds = sorted({int(s) for s in args.seeds.split(",") if s.strip()})
    except ValueError as exc:
        raise SystemExit(f"--seeds must be comma-separated integers: {exc}") from None
    if not args.seeds:
        raise SystemExit("--seeds must name at least one seed, got none")
    return args


def scorer_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every scorer as plain data (name, kind, path, budget), KL-ST first; SystemExit naming
    the expected form of a malformed one."""
    specs = [{"name": "KL-ST", "kind": "file", "path": args.klst, "budget": None}]
    for run in args.grpo_run:
        name, eq, path = run.partition("=")
        if not eq:
            name, path = "", run
        specs.append({"name": name, "kind": "grpo-run", "path": path, "budget": None})
    for spec in args.router:
        name, eq, rest = spec.partition("=")
        path, _, budget = rest.partition("#")
        try:
            if not (eq and name and path):
                raise ValueError
            k = float(budget) if budget else None
        except ValueError:
            raise SystemExit(f"--router expects NAME=PATH[#K], got {spec!r}") from None
        specs.append({"name": name, "kind": "file", "path": path, "budget": k})
    return specs


def load_scorer(spec: dict[str, Any], env: Any) -> Any:
    """The ``TransformerRouterPolicy`` of a scorer spec (raises before any episode if a file
    is missing or foreign)."""
    from agents.router import TransformerRouterPolicy
    from training.grpo import last_router
    from training.policies import check_policy_matches_env

    if spec["kind"] == "grpo-run":
        policy = last_router(spec["path"])
    else:
        policy = TransformerRouterPolicy.load(spec["path"], budget=spec["budget"])
    check_policy_matches_env(policy, env, spec["path"])
    return policy


def digest(spec: dict[str, Any]) -> str:
    """SHA-256 of the file a scorer comes from (a GRPO run: its ``checkpoint.pt``)."""
    path = Path(spec["path"]) / "checkpoint.pt" if spec["kind"] == "grpo-run" else spec["path"]
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Scoring:
    """KL-ST plays at its threshold; every scorer's ``p(high)`` of each state it meets is
    recorded with the simulator's live / derailed label (a ``RouterPolicy`` wrapper: it routes
    exactly as the playing router)."""

    def __init__(self, playing: Any, scorers: list[Any], env: Any) -> None:
        from agents.base import RouterPolicy, charges_router

        outer = self

        class _Policy(RouterPolicy):
            reads_observation = True
            charge_router = charges_router(playing)

            def _predict_batch(self, obs: dict, deterministic: bool) -> Any:
                props = outer.env.proposals()
                dead = bool(props["derailed"] or props["expert"] is None)
                scores = [float(s.high_precision_score(obs)[0]) for s in scorers]
                outer.rows.append({"live": not dead, "scores": scores})
                return playing.predict(obs, deterministic=deterministic)[0]

        self.env = getattr(env, "unwrapped", env)
        self.policy = _Policy(int(self.env.action_space.n))
        self.rows: list[dict[str, Any]] = []


def play_seed(seed: int, specs: list[dict], args: argparse.Namespace, tasks: list[int]) -> dict:
    """Worker: one seed's episodes, played by KL-ST, every state scored by every scorer."""
    from precision_gym.threads import configure_torch_threads
    from training.cli.common import make_env
    from training.evaluation import rollout

    configure_torch_threads(1)
    env = make_env(args.env_id, {})
    scorers = [load_scorer(s, env) for s in specs]
    playing = load_scorer(specs[0], env)
    playing.threshold = args.threshold
    scoring = Scoring(playing, scorers, env)
    episodes = []
    for index in tasks:
        scoring.rows = []
        rec = rollout(env, scoring.policy, seed, index, args.split)
        episodes.append({"task_index": index, "won": rec.won, "decisions": rec.decisions,
                         "live": [r["live"] for r in scoring.rows],
                         "scores": [r["scores"] for r in scoring.rows]})  # fmt: skip
    return {"seed": seed, "episodes": episodes}


def play_all(args: argparse.Namespace, specs: list[dict], tasks: list[int], out: Path) -> dict:
    """Each seed's scored states: read from ``out`` when a rerun finds the same scorers and
    episodes there, else played in ``--jobs`` processes and stored atomically."""
    from tqdm.auto import tqdm

    from precision_gym.io import atomic_write_text

    spec = {"scorers": [{**s, "digest": digest(s)} for s in specs], "env_id": args.env_id,
            "split": args.split, "tasks": tasks, "threshold": args.threshold}  # fmt: skip
    states, todo = {}, []
    for seed in args.seeds:
        path = out / f"states_s{seed}.json"
        if path.exists():
            stored = json.loads(path.read_text())
            differ = [k for k in spec if stored["spec"].get(k) != spec[k]]
            if differ:
                raise SystemExit(f"{path} was played with another {', '.join(differ)} than this "
                                 "run asks for: use another --out")  # fmt: skip
            states[seed] = stored["states"]
        else:
            todo.append(seed)
    from training.pools import process_pool

    with process_pool(args.jobs) as ex:  # workers end with this script, SIGTERM included
        futures = {ex.submit(play_seed, s, specs, args, tasks): s for s in todo}
        for fut in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                        desc="seeds", unit="seed"):  # fmt: skip
            seed = futures[fut]
            states[seed] = fut.result()
            atomic_write_text(out / f"states_s{seed}.json",
                              json.dumps({"spec": spec, "states": states[seed]}))  # fmt: skip
    return states


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import numpy as np

    from training.cli.common import make_env
    from training.evaluation import select_tasks
    from training.stats import clustered_auc_diff, rank_auc

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(args.env_id, {})
    unwrapped = env.unwrapped
    if not unwrapped.simulated:
        raise SystemExit(f"{args.env_id} is not served by SIMULATED tiers: the live / derailed "
                         "label reads the simulator's state")  # fmt: skip
    if args.split not in unwrapped.task.splits():
        raise SystemExit(f"--split must be one of {unwrapped.task.splits()} for {args.env_id}, "
                         f"got {args.split!r}")  # fmt: skip
    if args.quick:
        from matched_hp import quick_router  # benchmarks/ is on sys.path when run as a script

        args.klst = quick_router(out, env)
        args.router = args.router or [f"untrained={args.klst}"]
    specs = scorer_specs(args)
    policies = [load_scorer(s, env) for s in specs]  # every router loads before any episode
    for spec, policy in zip(specs, policies, strict=True):
        if not spec["name"]:
            spec["name"] = f"GRPO s{policy.metadata['operating_point']['seed']}"
        spec["threshold"] = float(policy.threshold)
    specs[0]["threshold"] = args.threshold  # KL-ST plays at it
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise SystemExit(f"expected one scorer per name, got {names}")
    tasks = select_tasks(unwrapped.task.num_tasks(args.split), args.episodes or None)
    print("SIMULATED precision tiers: not real-LLM results.")
    print(f"{args.env_id} {args.split}: {len(tasks)} tasks x seeds {args.seeds}; KL-ST "
          f"({args.klst}) plays at threshold {args.threshold:g}; every scorer scores its "
          f"states\n")  # fmt: skip
    t0 = time.perf_counter()
    states = play_all(args, specs, tasks, out)

    # per task (pooled over seeds): each scorer's scores and the live labels of its states
    clusters: dict[int, tuple[list, list]] = {}
    for seed in args.seeds:
        for ep in states[seed]["episodes"]:
            scores, live = clusters.setdefault(ep["task_index"], ([], []))
            scores.extend(ep["scores"])
            live.extend(ep["live"])
    live = np.concatenate([np.asarray(c[1], dtype=bool) for c in clusters.values()])
    if live.all() or not live.any():
        raise SystemExit(f"expected live and derailed states among the {len(live)} played, got "
                         f"{int(live.sum())} live: nothing to rank")  # fmt: skip
    score = np.concatenate([np.asarray(c[0], dtype=float).reshape(-1, len(specs))
                            for c in clusters.values()])  # fmt: skip
    print(f"{len(live)} states: {int(live.sum())} live, {int((~live).sum())} derailed "
          f"({(~live).mean():.0%})\n")  # fmt: skip
    print("| scorer | threshold | AUC live > derailed | mean p(high) live / derailed | "
          "sent high at its threshold: live / derailed | AUC - KL-ST (95%) |")  # fmt: skip
    print("|---|---:|---:|---|---|---|")
    rows = []
    for j, spec in enumerate(specs):
        s, tau = score[:, j], spec["threshold"]
        auc = rank_auc(s[live], s[~live])
        diff = None
        if j:
            per = [(np.asarray(c[0]).reshape(-1, len(specs))[:, j],
                    np.asarray(c[0]).reshape(-1, len(specs))[:, 0], np.asarray(c[1], dtype=bool))
                   for c in clusters.values() if c[1]]  # fmt: skip
            diff = clustered_auc_diff(per, n_boot=args.n_boot)
        row = {"scorer": spec["name"], "path": spec["path"], "threshold": tau, "auc": auc,
               "mean_live": float(s[live].mean()), "mean_derailed": float(s[~live].mean()),
               "high_live": float((s[live] >= tau).mean()),
               "high_derailed": float((s[~live] >= tau).mean()),
               "auc_minus_klst": diff.as_dict() if diff else None}  # fmt: skip
        rows.append(row)
        print(f"| {spec['name']} | {tau:.4g} | {auc:.3f} | {row['mean_live']:.3f} / "
              f"{row['mean_derailed']:.3f} | {row['high_live']:.2f} / {row['high_derailed']:.2f}"
              f" | {'' if diff is None else diff.fmt()} |")  # fmt: skip
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall:.0f} s (states already in {out} are reused)")
    plot(out / "routing_by_state.png", specs, score, live, args)
    from precision_gym.io import atomic_write_text

    data = {"simulated": True, "args": vars(args), "tasks": tasks, "states": int(len(live)),
            "live": int(live.sum()), "scorers": rows, "wall_s": wall}  # fmt: skip
    atomic_write_text(out / "results.json", json.dumps(data, indent=1, default=str))
    print(f"wrote {out / 'results.json'} and {out / 'routing_by_state.png'}")
    return 0


def plot(path: Path, specs: list[dict], score: Any, live: Any, args: Any) -> None:
    """Each scorer's p(high) (log-odds) on live and on derailed states, its threshold marked."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import save_figure

    fig, axes = plt.subplots(1, len(specs), figsize=(3.2 * len(specs), 3.2), squeeze=False)
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))  # noqa: E731
    for ax, (j, spec) in zip(axes[0], enumerate(specs), strict=True):
        bins = np.linspace(-14, 14, 57)
        ax.hist(logit(score[live, j]), bins=bins, alpha=0.6, density=True, label="live")
        ax.hist(logit(score[~live, j]), bins=bins, alpha=0.6, density=True, label="derailed")
        ax.axvline(logit(np.float64(spec["threshold"])), color="k", ls="--", lw=1)
        ax.set_title(spec["name"], fontsize=9)
        ax.set_xlabel("log-odds of p(high)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{args.env_id} {args.split}: p(high) on live and derailed states "
                 "(SIMULATED tiers; dashed: the scorer's threshold)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
