"""PPO vs GRPO routers from one KL-ST start, on Pareto frontiers with 95% CIs (issue 11).

SIMULATED precision pair (``precision_gym.backends.simulated``): every figure this script
writes is simulated, not a real-LLM result.

Read top to bottom (CleanRL style):

1. **KL-ST warm start**: reuse ``--klst PATH`` or build one (collect KL on ``--train-split``,
   class-weighted CE), calibrated at every budget K on ``--calib-split``.
2. **Fixed routers**, evaluated once per seed on the evaluation tasks: always-high,
   always-low, the SIMULATED oracle, random at KL-ST's realised rate at K = 0.4, and KL-ST
   at every K. Their training does not involve lambda, and an episode's modeled time T does
   not depend on lambda either, so their utility ``success - lambda * T`` at every lambda
   comes from the same episodes.
3. **Headroom first**: per lambda, the utility of always-high, always-low, the oracle and
   KL-ST at its best K, and the gap oracle - best KL-ST with its 95% CI: the most an RL
   stage could add. The SIMULATED oracle knows which states are critical, which no router
   that reads observations can know on unseen tasks; so the *kind oracle*
   (``agents.KindOracleRouter``: knows each state's chance of being critical from its kind
   and task type, and whether the episode has derailed; it pays the router's per-call time,
   as the RL routers do, since session 15) runs at ``--kind-shares`` too, and
   the best of it and the constant routers gives the attainable ceiling, with its gap over
   KL-ST and each kind-oracle point against KL-ST at the same HP. KL-ST's K points can sit
   far apart in HP, and its curve bends between them, so KL-ST also plays ``--curve-points``
   thresholds on ``p(high)`` in each gap between two of its calibrated thresholds (even in
   logit), at ``--curve-top`` budgets past its highest K (Eq. 7 on the calibration
   episodes) and at threshold 0, its top end (``curve_s<seed>`` units, lambda-free): "KL-ST
   at the same HP", here and in step 6, is read off that measured curve, interpolated only
   between neighbouring points, run by run (each run's router against the curve on its own
   episodes at its own HP, then averaged over runs: a run that ships its start adds
   exactly 0). Printed (and written), with the
   curve, before any RL result.
4. **RL**, per lambda and seed, both through the ``precision-gym`` CLI and both from the
   same KL-ST router at its K = ``--sample-budget`` operating point: ``train-grpo`` (then
   calibrated at every K on KL-ST's calibration episodes; at each K it ships the refined
   router only where the keep-best rule prefers it to the start router calibrated at K,
   unless ``--no-per-budget-selection``; ``--grpo-hold-budget`` holds the sampling budget at
   K during training) and ``train-sb3 --algo ppo``
   (encoder and action head from the router), on ``--train-split``. Both evaluate on
   ``--select-split`` (default: the calibration split) during training and keep a later
   router only when it beats the start there by a paired bootstrap bound
   (``--keep-best-rule paired``), else the start; a kept later router ships only if the
   rule holds again on ``--confirm-episodes`` fresh episodes. Seed s's routers are evaluated on
   seed s's episodes (``--eval-seeds-per-run N``: on N episode seeds s, s + S, ... with
   S = max(--seeds) + 1; where episodes are cheap and tasks few, as WebShop's 19 test tasks,
   3 seeds x 19 tasks is too few to tell a router from its start).
5. **Budgets held online** (``--online-step``, default 0.2; 0 turns it off): KL-ST and each
   GRPO router again at every K, with the online budget control of ``evaluate --online-step``
   (``agents.router.OnlineBudgetControl``) holding the realised HP fraction near K on the test
   stream, named ``... K=k online``, beside the fixed tau_K points. Held at the same K, GRPO
   and KL-ST are compared at the same HP without interpolation. (KL-ST's held points need no
   lambda: they run with step 2's routers.) Where a GRPO run ships its start router at K,
   calibrated on KL-ST's calibration episodes, it routes exactly as KL-ST there
   (``agents.router.routes_alike``: the same weights and threshold), so its fixed and held
   rows are KL-ST's rows on the same episodes, taken over rather than replayed; each unit's
   ``reused`` and the report say where.
6. **Report** per lambda: success, EP time on successes, HP fraction and utility with 95%
   bootstrap CIs over tasks (values averaged over seeds first); GRPO vs KL-ST at the same K
   and at matched HP (KL-ST read off its measured curve) and both held at K, each cell also
   with the simultaneous 95% interval over every (K, lambda) cell (Bonferroni: 15
   comparisons at the defaults), PPO vs its start per seed and,
   seeds pooled, vs its start and vs KL-ST at PPO's HP, all as paired bootstrap CIs; the
   paper's average rank (Sec. 5.3); the frontier plot (success vs EP time) and learning
   curves (mean +- std over seeds) as PNG.

    python benchmarks/ppo_vs_grpo.py                      # the full comparison (about 3.2 h on 2 cores)
    python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1   # the same on v1 (65 min, measured)
    python benchmarks/ppo_vs_grpo.py --quick --out /tmp/q --no-results-md   # smoke test

Every stage writes its result under ``--out`` and is skipped when rerun: an interrupted
benchmark resumes where it stopped, and a method added later (``--algos grpo,ppo`` after a run
with ``--algos ppo``) trains only its own units beside the finished ones. With ``--jobs N``
the units run in N processes (their output in ``OUT/UNIT.log``, a progress bar here); a unit
that fails, Ctrl-C or SIGTERM stops the others, and the finished ones stay; with
``--ray-address`` they run as Ray tasks instead, under the same rules. On ALFWorld the
planner's answers are kept in ``OUT/plan_cache`` (``--plan-cache``) and shared by every unit:
units that play the same episodes (every router of a seed does) search each derailed state
once, not once per process; a resumed run starts with the answers of the interrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "ALFWORLD_DATA" not in os.environ and (ROOT.parent / "shared" / "alfworld").is_dir():
    os.environ["ALFWORLD_DATA"] = str(ROOT.parent / "shared" / "alfworld")

SECTION = "## PPO vs GRPO (issue 11)"
FIXED = ("always-high", "always-low", "oracle", "random")


def _opt(default: Any, help: str) -> Any:
    """A benchmark option: its default and the help ``--help`` prints."""
    return field(default=default, metadata={"help": help})


@dataclass
class Args:
    env_id: str = _opt("DMR-ALFWorld-v0", "registered env id")
    env_kwargs: str = _opt(
        "",
        "JSON env kwargs for every stage, e.g. "
        '\'{"task_kwargs": {"force_high_on_search": false}}\' (WebShop with search steps '
        "routed, as the paper's GRPO does)",
    )
    lambdas: tuple[float, ...] = _opt(
        (0.02, 0.1, 0.5), "comma-separated lambda per second of modeled time (Eq. 8)"
    )
    main_lambda: float = _opt(
        0.02, "the lambda trained with --env-steps (not in --lambdas: the first of them)"
    )
    seeds: tuple[int, ...] = _opt((0, 1, 2), "comma-separated seeds: one RL run per seed")
    env_steps: int = _opt(12_000, "routing decisions per algorithm per seed at the main lambda")
    other_env_steps: int = _opt(4_000, "routing decisions per algorithm per seed at the others")
    pool_size: int = _opt(0, "train tasks the RL runs draw from (0 = the whole train split)")
    budgets: tuple[float, ...] = _opt(
        (0.1, 0.2, 0.4, 0.7, 0.9), "comma-separated budgets K (high-precision fractions)"
    )
    eval_split: str = _opt("valid_unseen", "split the routers are evaluated on")
    eval_episodes: int = _opt(
        0, "tasks per episode seed (0 = every task of the split: 134 on ALFWorld)"
    )
    eval_seeds_per_run: int = _opt(
        1,
        "episode seeds each run's routers (and each seed's fixed routers) play: seed s plays "
        "s, s + S, s + 2S, ... with S = max(--seeds) + 1, so no two runs share an episode. "
        "More than 1 where episodes are cheap and tasks few (WebShop: 19 test tasks)",
    )
    calib_split: str = _opt("valid_train", "split KL-ST's (and GRPO's) thresholds calibrate on")
    calib_episodes: int = _opt(24, "calibration episodes")
    train_split: str = _opt(
        "train",
        "where KL is collected and the RL methods train; ALFWorld's train_fit leaves out the "
        "floorplans of train_heldout (precision_gym.tasks.alfworld.HELDOUT_SCENES)",
    )
    select_split: str = _opt(
        "",
        "split of the keep-best evaluations and the confirmation ('' = --calib-split); "
        "train_heldout chooses on floorplans the RL run never trained on, as valid_unseen's are",
    )
    klst: str | None = _opt(None, "a KL-ST router file (default: build one under --out)")
    kl_episodes: int = _opt(240, "episodes of KL collection when building KL-ST")
    klst_epochs: int = _opt(14, "KL-ST training epochs when building it")
    sample_budget: float = _opt(
        0.4, "both RL methods start at KL-ST's calibrated point at this K (one of --budgets)"
    )
    algos: tuple[str, ...] = _opt(
        ("grpo", "ppo"), "the RL methods to train: grpo, ppo or both (comma-separated)"
    )
    group_size: int = _opt(8, "GRPO: trajectories sampled per task (G)")
    tasks_per_batch: int = _opt(4, "GRPO: tasks per update (one group each)")
    grpo_lr: float = _opt(1e-4, "GRPO: Adam learning rate")
    grpo_epochs: int = _opt(2, "GRPO: optimisation passes over each batch")
    grpo_advantage_norm: str = _opt(
        "none", "GRPO: advantage normalisation (group-std, the paper's; none; batch-std)"
    )
    grpo_kl_coef: float = _opt(0.05, "GRPO: KL penalty to the reference (start) router")
    grpo_eval_every: int = _opt(5, "GRPO: keep-best evaluation every N updates")
    grpo_step_weight: float = _opt(
        0.0, "GRPO: GiGPO's step-level advantage weight (0 = the paper's GRPO)"
    )
    grpo_step_gamma: float = _opt(0.95, "GRPO: discount of GiGPO's step returns-to-go")
    grpo_hold_budget: bool = _opt(
        False,
        "GRPO samples at K = --sample-budget and re-centres its high-tier shift after every "
        "update so that it keeps routing K of the batch high: it can only re-rank states "
        "(train-grpo --hold-sample-budget)",
    )
    ppo_n_steps: int = _opt(256, "PPO: rollout length per update")
    ppo_batch_size: int = _opt(64, "PPO: minibatch size")
    ppo_eval_freq: int = _opt(2_000, "PPO: keep-best evaluation every N decisions")
    rl_eval_episodes: int = _opt(32, "episodes of each keep-best evaluation (--select-split)")
    keep_best_rule: str = _opt(
        "paired", "training.selection rule: 'paired' = beat the start by a paired bound"
    )
    keep_best_level: float = _opt(0.9, "the keep-best rule's one-sided confidence")
    confirm_episodes: int = _opt(
        32,
        "a kept later router must beat the start again on this many fresh episodes, else the "
        "start ships; GRPO's per-budget choice uses them too (0: off)",
    )
    no_per_budget_selection: bool = _opt(
        False,
        "GRPO ships its refined router at every K (default: at each K only where the keep-best "
        "rule prefers it to the start calibrated at K, train-grpo --keep-best-per-budget)",
    )
    kind_shares: tuple[float, ...] = _opt(
        (0.0, 0.1, 0.2),
        "kind-oracle points (SIMULATED tiers): route high where the low tier's critical share "
        "is >= each value (0 = every live step), low once derailed: the attainable ceiling",
    )
    online_step: float = _opt(0.2, "online budget control of the held-K points (0: none)")
    curve_points: int = _opt(
        3,
        "KL-ST also plays, lambda-free on each seed's episodes, at this many thresholds on "
        "p(high) in each gap between two adjacent calibrated tau_K (even in logit): its "
        "measured curve, which every figure 'at the same HP' reads; and at threshold 0 "
        "(every decision high: K = 1), its top end (0: only the K points, joined by straight "
        "lines, as before session 25)",
    )
    curve_top: tuple[float, ...] = _opt(
        (0.95, 0.99),
        "budgets above the highest --budgets K at which KL-ST's curve also plays (with "
        "--curve-points > 0; and --curve-points thresholds in each gap), between its "
        "highest K point and its top end: Eq. 7's Quantile_{1-K} of KL-ST's scores on the "
        "calibration episodes routed at the highest K (a calibrated K = 0.9 can route far "
        "fewer test decisions high: 70% on WebShop)",
    )
    n_boot: int = _opt(10_000, "bootstrap resamples of every CI")
    out: str = _opt("runs/ppo_vs_grpo", "output folder (a rerun resumes from it)")
    jobs: int = _opt(
        2,
        "units (fixed routers of a seed, RL of a lambda x seed) run in parallel processes "
        "(not used with --ray-address: the instance's CPUs decide)",
    )
    threads: int = _opt(1, "torch threads per process")
    plan_cache: str = _opt(
        "",
        "ALFWorld: folder of the planner's answers, shared by every stage, unit and worker "
        "process, so that no state is searched twice ('' = $PRECISION_GYM_PLAN_CACHE, else "
        "OUT/plan_cache; 'off' = each process plans alone, as before session 19)",
    )
    ray_address: str = _opt(
        "",
        "run the units as Ray tasks of one CPU each, as many at once as the instance has CPUs "
        "('local' starts one here, 'auto' joins a running one, 'ray://host:10001'; '' = --jobs "
        "local processes). On a cluster, this checkout, its Python, the data and OUT must lie at "
        "the same paths on every node (a shared filesystem)",
    )
    only_unit: str = _opt("", "internal: run one unit (used by --jobs and --ray-address)")
    results_md: str | None = _opt(
        str(ROOT / "benchmarks" / "RESULTS.md"), "file whose PPO-vs-GRPO section is rewritten"
    )
    quick: bool = _opt(False, "a tiny WebShop run (the smoke test); flags given override it")


QUICK = {  # a tiny run for the subprocess test: WebShop is ~100x faster per step
    "env_id": "DMR-WebShop-v0",
    "lambdas": (0.02, 0.5),
    "seeds": (0,),
    "env_steps": 24,
    "other_env_steps": 16,
    "pool_size": 3,
    "budgets": (0.4, 0.7),
    "eval_split": "test",
    "eval_episodes": 3,
    "calib_split": "eval",
    "calib_episodes": 2,
    "kl_episodes": 3,
    "klst_epochs": 1,
    "group_size": 2,
    "tasks_per_batch": 1,
    "grpo_eval_every": 1,
    "ppo_n_steps": 16,
    "ppo_batch_size": 16,
    "ppo_eval_freq": 16,
    "rl_eval_episodes": 2,
    "confirm_episodes": 2,
    "curve_points": 1,
    "n_boot": 200,
    "jobs": 1,
}


def selection_split(args: Args) -> str:
    """The split of the RL runs' keep-best evaluations and confirmation."""
    return args.select_split or args.calib_split


def _list_of(kind: type) -> Any:
    """An argparse type: a comma-separated list of ``kind`` values, as a tuple."""

    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}"
            ) from None

    parse.__name__ = f"{kind.__name__} list"
    return parse


def parse_args(argv: list[str]) -> Args:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(Args):
        flag, value, help = "--" + f.name.replace("_", "-"), f.default, f.metadata["help"]
        if isinstance(value, bool):
            p.add_argument(flag, action="store_true", default=value, help=help)
        elif isinstance(value, tuple):
            p.add_argument(flag, type=_list_of(type(value[0])), default=value, help=help)
        else:
            kind = type(value) if value is not None else str
            p.add_argument(flag, type=kind, default=value, help=help)
    p.add_argument("--no-results-md", dest="results_md", action="store_const", const=None,
                   help="write no RESULTS.md section")  # fmt: skip
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.quick:
        given = {k for k in vars(ns) if f"--{k.replace('_', '-')}" in argv}
        args = Args(**{**asdict(args), **{k: v for k, v in QUICK.items() if k not in given}})
    if args.main_lambda not in args.lambdas:
        args.main_lambda = args.lambdas[0]
    if args.confirm_episodes < 0:
        raise SystemExit(f"--confirm-episodes must be >= 0 (0: off), got {args.confirm_episodes}")
    if args.eval_seeds_per_run < 1:
        raise SystemExit(f"--eval-seeds-per-run must be >= 1, got {args.eval_seeds_per_run}")
    if min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds must be distinct and >= 0, got {list(args.seeds)}")
    env_kwargs(args)  # a JSON object, checked before any work
    if not args.online_step >= 0:
        raise SystemExit(
            f"--online-step must be >= 0 (0: no held-K points), got {args.online_step}"
        )
    if not args.algos or not set(args.algos) <= {"grpo", "ppo"}:
        raise SystemExit(f"--algos must name grpo, ppo or both, got {','.join(args.algos)!r}")
    if args.curve_points < 0:
        raise SystemExit(f"--curve-points must be >= 0 (0: the K points only), got "
                         f"{args.curve_points}")  # fmt: skip
    top_bad = [k for k in args.curve_top if not max(args.budgets) < k < 1.0]
    if top_bad:
        raise SystemExit(
            f"--curve-top budgets must lie strictly between the highest --budgets K "
            f"({max(args.budgets):g}) and 1, got {top_bad}"
        )
    if args.sample_budget not in args.budgets:
        raise SystemExit(
            f"--sample-budget {args.sample_budget} must be one of --budgets {args.budgets}"
        )
    from precision_gym.error import ConfigError
    from training.selection import validate_rule

    try:
        validate_rule(args.keep_best_rule, args.keep_best_level)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    return args


def env_kwargs(args: Args) -> dict[str, Any]:
    """``--env-kwargs`` as a dict (validated: a JSON object)."""
    if not args.env_kwargs:
        return {}
    try:
        value = json.loads(args.env_kwargs)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f"--env-kwargs expects a JSON object, got {args.env_kwargs!r}: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise SystemExit(f"--env-kwargs expects a JSON object, got {args.env_kwargs!r}")
    return value


def cli(*argv: str) -> float:
    """Run one ``precision-gym`` command in-process (exactly what the shell runs); seconds."""
    from training.cli.main import main

    print("$ precision-gym " + shlex.join(argv), flush=True)
    t = time.perf_counter()
    rc = main(list(argv))
    if rc:
        raise SystemExit(f"precision-gym {argv[0]} failed with exit code {rc}")
    return time.perf_counter() - t


def utility(record: Any, lam: float) -> float:
    """Eq. 8 for one episode at ``lam`` (``training.evaluation.episode_utility``)."""
    from training.evaluation import episode_utility

    return episode_utility(record, lam)


# ----------------------------------------------------------------------------- 1. KL-ST
def klst_router(args: Args, out: Path, env: Any) -> Path:
    from agents.router import TransformerRouterPolicy, _budget_key
    from training.calibrate import calibrate_router
    from training.kl_collect import CollectConfig, collect_kl
    from training.kl_st import TRAIN_STATE, TrainConfig, train_klst

    if args.klst:
        path = Path(args.klst)
    else:
        path = out / "klst" / "router.pt"
        if not path.exists():
            collect_kl(
                out / "kl",
                CollectConfig(env_id=args.env_id, env_kwargs=env_kwargs(args),
                              split=args.train_split, episodes=args.kl_episodes,
                              seed=0, shard_size=10),
                env=env,
                progress=True,
            )  # fmt: skip
            train_klst(
                TrainConfig(data=str(out / "kl"), out=str(out / "klst"), epochs=args.klst_epochs,
                            patience=4, d_model=64, seed=0),
                progress=True,
                resume=(out / "klst" / TRAIN_STATE).exists(),
            )  # fmt: skip
    have = TransformerRouterPolicy.load(path).thresholds
    if any(_budget_key(k) not in have for k in args.budgets):
        calibrate_router(
            path, env, split=args.calib_split, episodes=args.calib_episodes,
            budgets=args.budgets, seed=0, out_dir=out / "klst_calibration",
        )  # fmt: skip
    return path


# ----------------------------------------------------------------------------- 2.+4. units
def eval_tasks(args: Args, env: Any) -> list[int]:
    from training.evaluation import select_tasks

    n = env.unwrapped.task.num_tasks(args.eval_split)
    return select_tasks(n, args.eval_episodes or None)


def episode_seeds(args: Args, seed: int) -> list[int]:
    """The episode seeds seed ``seed``'s routers play (``--eval-seeds-per-run``): ``seed``,
    ``seed + S``, ... with ``S = max(--seeds) + 1``, so that no two runs share an episode."""
    stride = max(args.seeds) + 1
    return [seed + j * stride for j in range(args.eval_seeds_per_run)]


def run_seed(args: Args, episode_seed: int) -> int:
    """The run whose routers played ``episode_seed`` (the inverse of :func:`episode_seeds`)."""
    return episode_seed % (max(args.seeds) + 1)


#: the options that decide a unit's rows, by kind of unit (:func:`unit_settings`)
EVAL_SETTINGS = ("env_id", "env_kwargs", "eval_split", "eval_episodes")
CALIBRATION = ("budgets", "calib_split", "calib_episodes")
RL_SETTINGS = (
    *CALIBRATION, "sample_budget", "train_split", "select_split", "pool_size",
    "rl_eval_episodes", "keep_best_rule", "keep_best_level", "confirm_episodes",
)  # fmt: skip
ALGO_SETTINGS = {
    "grpo": (
        "group_size", "tasks_per_batch", "grpo_lr", "grpo_epochs", "grpo_advantage_norm",
        "grpo_kl_coef", "grpo_eval_every", "grpo_step_weight", "grpo_step_gamma",
        "grpo_hold_budget", "no_per_budget_selection",
    ),
    "ppo": ("ppo_n_steps", "ppo_batch_size", "ppo_eval_freq"),
}  # fmt: skip
UNIT_SETTINGS = {
    "fixed": (*CALIBRATION, "sample_budget"),  # random routes at KL-ST's rate there
    "kind": ("kind_shares",),
    "curve": (*CALIBRATION, "curve_points", "curve_top"),
    "online": (*CALIBRATION, "online_step"),
}


def unit_settings(args: Args, unit: str) -> dict[str, Any]:
    """The options a unit's rows depend on (stored in the unit, checked by
    :func:`check_units`): the evaluation's, and the unit kind's own; an RL unit's include its
    training's (and its routing decisions at its lambda), as does a GRPO run's held-K unit.
    The KL-ST router is checked apart (:func:`check_router`)."""
    values = {**asdict(args), "env_kwargs": env_kwargs(args)}
    kind, lam = unit.split("_")[0], unit_lambda(unit)
    names = [*EVAL_SETTINGS, *UNIT_SETTINGS.get(kind, ())]
    settings: dict[str, Any] = {}
    if lam is not None:  # RL, or a GRPO run's routers held at K
        algo = unit.split("_")[1] if kind == "rl" else "grpo"
        names += [*RL_SETTINGS, *ALGO_SETTINGS[algo]]
        main = float(lam) == args.main_lambda
        settings["env_steps"] = args.env_steps if main else args.other_env_steps
    settings |= {n: values[n] for n in names}
    return json.loads(json.dumps(settings))  # as a unit file holds them (tuples as lists)


def klst_digest(args: Args, klst: Path) -> str:
    """What decides KL-ST's routing at ``--budgets`` (``agents.router.routing_digest``)."""
    from agents.router import routing_digest

    return routing_digest(klst, args.budgets)


def check_router(args: Args, out: Path, klst: Path) -> None:
    """Refuse a run folder whose finished units came from another KL-ST router than
    ``klst`` (other weights, or other thresholds at ``--budgets``): every unit but the kind
    oracle's starts from it. Units written before session 25 hold no digest. A curve unit
    measured at other thresholds than :func:`curve_thresholds` (other ``--curve-points`` or
    ``--curve-top``, or made before the curve had its top end) is refused too, once those
    are calibrated (:func:`calibrate_curve_top`)."""
    digest = klst_digest(args, klst) if klst.is_file() else None
    top = curve_top_taus(args, out, klst) if digest is not None else None
    for unit in units(args):
        path = out / f"{unit}.json"
        if digest is None or unit.startswith("kind") or not path.exists():
            continue
        data = json.loads(path.read_text())
        have = data.get("klst_routing", digest)
        if have != digest:
            raise SystemExit(
                f"{path} was made with another KL-ST router than {klst} (its weights, or its "
                f"thresholds at --budgets {list(args.budgets)}, differ: routing digest "
                f"{have[:12]} vs {digest[:12]}): use another --out, or remove the unit files "
                "to redo them"
            )
        if unit.startswith("curve") and "klst_routing" in data and top is not None:
            have_t = sorted(r["threshold"] for r in data["results"].values())
            want_t = sorted(curve_named(args, klst, out).values())
            if len(have_t) != len(want_t) or not np.allclose(have_t, want_t, rtol=0, atol=1e-12):
                raise SystemExit(
                    f"{path} measured KL-ST's curve at thresholds "
                    f"{[float(f'{t:.4g}') for t in have_t]}; this run's curve is "
                    f"{[float(f'{t:.4g}') for t in want_t]} (--curve-points "
                    f"{args.curve_points}, --curve-top {list(args.curve_top)}): use another "
                    "--out, or remove the unit file to redo it"
                )


def check_units(args: Args, out: Path) -> None:
    """Refuse, before any work, a run folder whose finished units were made otherwise than
    this invocation asks: on other episode seeds (a unit written before
    ``--eval-seeds-per-run`` played its own seed only), or with another value of an option
    its rows depend on (:func:`unit_settings`; units written before session 25 hold none and
    are taken as they are); then, where the KL-ST router exists already, with another one
    (:func:`check_router`; :func:`main` checks again once it is built)."""
    for unit in units(args):
        path = out / f"{unit}.json"
        if not path.exists():
            continue
        seed = int(unit.rsplit("_s", 1)[1])
        data = json.loads(path.read_text())
        have, want = data.get("episode_seeds", [seed]), episode_seeds(args, seed)
        if have != want:
            raise SystemExit(
                f"{path} was evaluated on episode seeds {have}; this run expects {want} "
                f"(--eval-seeds-per-run {args.eval_seeds_per_run}): use another --out, or "
                "remove the unit files to re-evaluate"
            )
        have, want = data.get("settings", {}), unit_settings(args, unit)
        for name in (n for n in have if n in want and have[n] != want[n]):
            flag = "--" + name.replace("_", "-")
            if name == "env_steps":  # the decisions at the unit's lambda
                lam = unit_lambda(unit)
                main = float(lam or "nan") == args.main_lambda
                flag = f"{'--env-steps' if main else '--other-env-steps'} at lambda {lam}"
            raise SystemExit(
                f"{path} was made with {name} = {have[name]!r}; this run asks for "
                f"{want[name]!r} ({flag}): use another --out, or remove the unit file (and "
                "its run folder) to redo it"
            )
    check_router(args, out, Path(args.klst) if args.klst else out / "klst" / "router.pt")


def evaluate_all(args: Args, env: Any, policies: dict[str, Any], seed: int) -> dict[str, Any]:
    from training.evaluation import evaluate

    tasks = eval_tasks(args, env)
    return {
        name: asdict(
            evaluate(
                policy,
                env,
                env_id=args.env_id,
                split=args.eval_split,
                task_indices=tasks,
                seeds=episode_seeds(args, seed),
                router_name=name,
            )
        )
        for name, policy in policies.items()
    }


def fixed_unit(args: Args, env: Any, klst: Path, seed: int) -> dict[str, Any]:
    """Step 2: the routers that are not trained with lambda, on seed ``seed``'s episodes."""
    from agents import make_baseline
    from training.policies import load_policy

    policies = {n: make_baseline(n, env) for n in ("always-high", "always-low")}
    if env.unwrapped.simulated:
        policies["oracle"] = make_baseline("oracle", env)
    klst_points = {f"KL-ST K={k:g}": load_policy(klst, env, budget=k) for k in args.budgets}
    results = evaluate_all(args, env, {**policies, **klst_points}, seed)
    ref = results[f"KL-ST K={args.sample_budget:g}"]
    decisions = sum(r["decisions"] for r in ref["records"])
    rate = sum(r["high_decisions"] for r in ref["records"]) / max(decisions, 1)
    rnd = make_baseline("random", env, p_high=rate, seed=seed)
    results.update(evaluate_all(args, env, {"random": rnd}, seed))
    results["random"]["p_high"] = rate
    return {"results": results}


#: KL-ST's extra curve points are named ``KL-ST tau=<threshold>`` (not methods: they join
#: no table of routers, only KL-ST's curve)
CURVE = "KL-ST tau="
#: KL-ST's thresholds at --curve-top (:func:`calibrate_curve_top`), in the run folder
CURVE_TOP = "klst_curve_top.json"


def curve_top_settings(args: Args, klst: Path) -> dict[str, Any]:
    """What :func:`calibrate_curve_top`'s thresholds depend on."""
    values = {n: getattr(args, n) for n in (*CALIBRATION, "curve_top")}
    return json.loads(json.dumps({"klst_routing": klst_digest(args, klst), **values}))


def calibrate_curve_top(args: Args, out: Path, env: Any, klst: Path) -> None:
    """KL-ST's thresholds at ``--curve-top`` (``OUT/klst_curve_top.json``): Eq. 7's
    ``Quantile_{1-K}`` of its scores on the calibration episodes, routed at the highest
    ``--budgets`` K, so that its curve has measured points between that K and its top end.
    A K point past ~0.9 has too few scores above it to refine. Kept while KL-ST's routing
    and the calibration settings are the same; redone (one pass over the calibration
    episodes, seeded as the calibration) otherwise."""
    from agents.router import TransformerRouterPolicy, _budget_key
    from training.calibrate import pool_scores
    from training.evaluation import select_tasks, write_json
    from training.thresholds import quantile_threshold

    if not args.curve_points or not args.curve_top:
        return
    path, want = out / CURVE_TOP, curve_top_settings(args, klst)
    if path.exists() and json.loads(path.read_text()).get("settings") == want:
        return
    policy = TransformerRouterPolicy.load(klst)
    policy.set_budget(None)
    tau = policy.thresholds[_budget_key(max(args.budgets))]
    tasks = select_tasks(env.unwrapped.task.num_tasks(args.calib_split), args.calib_episodes)
    scores, wins, hp = pool_scores(policy, env, args.calib_split, tasks, 0, threshold=tau)
    taus = {_budget_key(k): quantile_threshold(scores, k) for k in args.curve_top}
    write_json(
        {"settings": want, "thresholds": taus, "routed_at": tau, "pool_hp_fraction": hp,
         "n_scores": len(scores), "simulated": bool(env.unwrapped.simulated)},
        path,
    )  # fmt: skip
    print(
        f"KL-ST's curve top: tau at K = {', '.join(f'{k:g}' for k in args.curve_top)}: "
        + ", ".join(f"{t:.4g}" for t in taus.values())
        + f" (Eq. 7 on {len(scores)} calibration scores routed at tau {tau:.4g}, HP {hp:.2f})",
        flush=True,
    )


def curve_top_taus(args: Args, out: Path, klst: Path) -> list[float] | None:
    """:func:`calibrate_curve_top`'s thresholds, ``[]`` where the curve has none, ``None``
    while they are not (or for another router or settings not) calibrated."""
    from agents.router import _budget_key

    if not args.curve_points or not args.curve_top:
        return []
    path = out / CURVE_TOP
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("settings") != curve_top_settings(args, klst):
        return None
    return [float(data["thresholds"][_budget_key(k)]) for k in args.curve_top]


def curve_thresholds(args: Args, klst: Path, out: Path) -> list[float]:
    """KL-ST's thresholds at ``--curve-top`` (:func:`calibrate_curve_top`); ``--curve-points``
    thresholds in each gap between two adjacent ones of those and its calibrated tau_K, even
    in logit (:func:`training.thresholds.thresholds_between`); and 0, the curve's top end (every
    decision high, K = 1: a calibrated K = 0.9 can route far fewer than 90% of the test
    decisions high, session 26 on WebShop: 70%, so that without them the curve stopped,
    or ran straight, below where always-high and the kind oracle sit). None with
    ``--curve-points 0``."""
    from agents.router import TransformerRouterPolicy, _budget_key
    from training.thresholds import thresholds_between

    if not args.curve_points:
        return []
    taus = TransformerRouterPolicy.load(klst).thresholds
    taus_k = [taus[_budget_key(k)] for k in args.budgets]
    top = curve_top_taus(args, out, klst)
    if top is None:
        raise SystemExit(
            f"{out / CURVE_TOP} holds no thresholds at --curve-top {list(args.curve_top)} "
            f"for {klst}: the benchmark's main process calibrates them before any unit"
        )
    # a threshold of 0 or 1 or beyond (K = 0: never high) bounds no gap on p(high)
    top = [t for t in top if 0.0 < t < 1.0]
    between = thresholds_between([t for t in taus_k if 0.0 < t < 1.0] + top, args.curve_points)
    return between + top + ([0.0] if min(taus_k) > 0.0 else [])  # a K point at 0: top end


def curve_named(args: Args, klst: Path, out: Path) -> dict[str, float]:
    """:func:`curve_thresholds` by row name (``KL-ST tau=<t:.4g>``; of two thresholds within
    4 digits, the first)."""
    named: dict[str, float] = {}
    for t in curve_thresholds(args, klst, out):
        named.setdefault(f"{CURVE}{t:.4g}", t)
    return named


def curve_unit(args: Args, out: Path, env: Any, klst: Path, seed: int) -> dict[str, Any]:
    """Step 3's reference: KL-ST at :func:`curve_thresholds` on seed ``seed``'s episodes, so
    that a router's utility "at the same HP" is read off KL-ST's measured curve, not off a
    straight line between two distant K points (session 24: on DMR-ALFWorld-v1 such a line
    made a +0.052 gap of +0.011)."""
    from agents.router import TransformerRouterPolicy
    from training.policies import check_policy_matches_env

    policies = {}
    for name, t in curve_named(args, klst, out).items():
        policy = TransformerRouterPolicy.load(klst)
        check_policy_matches_env(policy, env, str(klst))
        policy.threshold = t
        policies[name] = policy
    results = evaluate_all(args, env, policies, seed)
    for name, policy in policies.items():
        results[name]["threshold"] = policy.threshold
    return {"results": results}


def kind_names(args: Args) -> list[str]:
    return [f"kind-oracle(share>={s:g})" for s in args.kind_shares]


def kind_unit(args: Args, env: Any, seed: int) -> dict[str, Any]:
    """Step 3's attainable ceiling: the kind oracle at each ``--kind-shares`` value on seed
    ``seed``'s episodes (SIMULATED tiers only; none with real ones)."""
    from agents import make_baseline

    if not env.unwrapped.simulated:
        return {"results": {}}
    policies = {
        name: make_baseline("kind-oracle", env, min_share=share)
        for name, share in zip(kind_names(args), args.kind_shares, strict=True)
    }
    return {"results": evaluate_all(args, env, policies, seed)}


def rl_unit(
    args: Args, out: Path, env: Any, klst: Path, algo: str, lam: float, seed: int
) -> dict[str, Any]:
    """Step 4: ``algo`` (GRPO or PPO) trained at ``lam`` with ``seed``, then evaluated."""
    from training.grpo import router_for_budget
    from training.policies import load_policy

    steps = args.env_steps if lam == args.main_lambda else args.other_env_steps
    tag = f"l{lam:g}_s{seed}"
    common = ["--env-id", args.env_id, "--seed", str(seed), "--cost-weight", str(lam)]
    if args.env_kwargs:
        common += ["--env-kwargs", args.env_kwargs]
    common += ["--no-progress", "--sample-budget", str(args.sample_budget)]
    common += ["--split", args.train_split]
    common += ["--eval-split", selection_split(args)]
    common += ["--eval-episodes", str(args.rl_eval_episodes)]
    common += ["--keep-best-rule", args.keep_best_rule]
    common += ["--keep-best-level", str(args.keep_best_level)]
    common += ["--confirm-episodes", str(args.confirm_episodes)]
    if args.pool_size:
        common += ["--pool-size", str(args.pool_size)]
    grpo_out, ppo_out = out / f"grpo_{tag}", out / f"ppo_{tag}"
    grpo_argv = [
        "train-grpo", *common, "--init-checkpoint", str(klst), "--out", str(grpo_out),
        "--total-env-steps", str(steps), "--max-updates", "100000",
        "--group-size", str(args.group_size), "--tasks-per-batch", str(args.tasks_per_batch),
        "--lr", str(args.grpo_lr), "--epochs", str(args.grpo_epochs),
        "--advantage-norm", args.grpo_advantage_norm, "--kl-coef", str(args.grpo_kl_coef),
        "--eval-every", str(args.grpo_eval_every),
        "--step-advantage-weight", str(args.grpo_step_weight),
        "--step-gamma", str(args.grpo_step_gamma),
        *(["--hold-sample-budget"] if args.grpo_hold_budget else []),
        "--budgets", ",".join(f"{k:g}" for k in args.budgets),
        "--calibration-split", args.calib_split,
        "--calibration-episodes", str(args.calib_episodes),
        "--calibration-seed", "0",  # KL-ST's: a kept start router gets KL-ST's thresholds
        "--no-keep-best-per-budget" if args.no_per_budget_selection else "--keep-best-per-budget",
    ]  # fmt: skip
    if (grpo_out / "checkpoint.pt").exists():
        grpo_argv.append("--resume")  # the unit was interrupted: GRPO resumes
    ppo_kwargs = {"n_steps": args.ppo_n_steps, "batch_size": args.ppo_batch_size}
    ppo_argv = [
        "train-sb3", "--algo", "ppo", *common, "--features", "router",
        "--router-checkpoint", str(klst), "--out", str(ppo_out),
        "--total-timesteps", str(steps), "--algo-kwargs", json.dumps(ppo_kwargs),
        "--eval-freq", str(args.ppo_eval_freq),
    ]  # fmt: skip
    if (ppo_out / "model.zip").exists():
        ppo_argv.append("--overwrite")  # SB3 does not resume: an interrupted unit retrains
    argv = {"grpo": grpo_argv, "ppo": ppo_argv}[algo]
    times = {f"{algo}_s": cli(*argv)}
    t = time.perf_counter()
    data: dict[str, Any] = {"times": times, "commands": ["precision-gym " + shlex.join(argv)]}
    if algo == "grpo":
        shipped = {f"GRPO K={k:g}": (router_for_budget(grpo_out, k), k) for k in args.budgets}
        data |= evaluate_or_reuse(args, env, out, klst, seed, shipped, online=False)
    else:  # this run's own model (an SB3 archive is unpickled: we wrote it)
        policies = {"PPO": load_policy(ppo_out / "model.zip", env, trust_checkpoint=True)}
        data["results"] = evaluate_all(args, env, policies, seed)
    times["eval_s"] = time.perf_counter() - t
    return data


def evaluate_or_reuse(
    args: Args,
    env: Any,
    out: Path,
    klst: Path,
    seed: int,
    shipped: dict[str, tuple[Path, float]],
    *,
    online: bool,
) -> dict[str, Any]:
    """Evaluate GRPO's shipped routers ``{name: (router file, K)}`` on seed ``seed``'s
    episodes (``online``: each held at its K by the online control), except where one routes
    exactly as KL-ST at K (``agents.router.routes_alike``: the run shipped its start,
    calibrated on KL-ST's calibration episodes): there KL-ST's row on the same episodes
    (``KL-ST K=k`` of ``fixed_s<seed>``, or ``KL-ST K=k online`` of ``online_s<seed>``) is its
    row, renamed, and ``reused`` says so. The episodes are deterministic, so a replay gives
    the same records (the smoke test replays them). In session 23's run on DMR-ALFWorld-v1,
    where GRPO shipped its start everywhere, these replays were about a quarter of the units'
    time."""
    from agents.router import routes_alike
    from training.policies import load_policy

    source, suffix = (f"online_s{seed}", " online") if online else (f"fixed_s{seed}", "")
    rows = _unit_rows(args, env, out / f"{source}.json", seed)
    reused: dict[str, str] = {}  # GRPO row -> the KL-ST row it is
    for name, (router, k) in shipped.items():
        kl_name = f"KL-ST K={k:g}{suffix}"
        if kl_name in rows and routes_alike(router, klst, k):
            reused[name] = kl_name
    policies = {
        name: load_policy(router, env, budget=k, online_step=args.online_step if online else None)
        for name, (router, k) in shipped.items()
        if name not in reused
    }
    played = evaluate_all(args, env, policies, seed)
    results = {
        name: {**rows[reused[name]], "router": name} if name in reused else played[name]
        for name in shipped
    }
    why = "which routes alike: the same weights and threshold at K"
    return {
        "results": results,
        "reused": {n: f"{source}: {kl}, {why}" for n, kl in reused.items()},
    }


def _unit_rows(args: Args, env: Any, path: Path, seed: int) -> dict[str, Any]:
    """The rows of a finished unit that played exactly seed ``seed``'s evaluation episodes
    (``{}`` when the unit has not finished or played others)."""
    if not path.is_file():
        return {}
    tasks, seeds = eval_tasks(args, env), episode_seeds(args, seed)
    return {
        name: row
        for name, row in json.loads(path.read_text())["results"].items()
        if row.get("env") == args.env_id
        and row.get("split") == args.eval_split
        and row.get("task_indices") == tasks
        and row.get("seeds") == seeds
    }


def online_unit(
    args: Args, out: Path, env: Any, klst: Path, lam: float | None, seed: int
) -> dict[str, Any]:
    """Step 5: KL-ST (``lam`` None) or the GRPO router trained at ``lam``, at every K with the
    online budget control, on seed ``seed``'s episodes (one stream, in the evaluator's order)."""
    from training.grpo import router_for_budget
    from training.policies import load_policy

    if lam is not None:  # GRPO: the router its run ships at K, or KL-ST's row where alike
        run = out / f"grpo_l{lam:g}_s{seed}"
        shipped = {f"GRPO K={k:g} online": (router_for_budget(run, k), k) for k in args.budgets}
        return evaluate_or_reuse(args, env, out, klst, seed, shipped, online=True)
    policies = {
        f"KL-ST K={k:g} online": load_policy(klst, env, budget=k, online_step=args.online_step)
        for k in args.budgets
    }
    return {"results": evaluate_all(args, env, policies, seed)}


def units(args: Args) -> list[str]:
    fixed = [f"fixed_s{s}" for s in args.seeds] + [f"kind_s{s}" for s in args.seeds]
    if args.curve_points:
        fixed += [f"curve_s{s}" for s in args.seeds]
    # one unit per method, so that a method added later (--algos) joins a finished run folder
    rl = [f"rl_{a}_l{lam:g}_s{s}" for lam in args.lambdas for s in args.seeds for a in args.algos]
    if not args.online_step:
        return fixed + rl
    online = [f"online_s{s}" for s in args.seeds]  # KL-ST held at K
    if "grpo" in args.algos:  # each GRPO router held at K
        online += [f"online_l{lam:g}_s{s}" for lam in args.lambdas for s in args.seeds]
    return fixed + rl + online


def unit_lambda(unit: str) -> str | None:
    """The lambda a unit's routers were trained at (``rl_ppo_l0.5_s1`` -> "0.5"), else None."""
    for part in unit.split("_")[1:]:
        if part.startswith("l") and part[1:2].isdigit():
            return part[1:]
    return None


def run_unit(args: Args, out: Path, env: Any, klst: Path, unit: str) -> None:
    from training.evaluation import write_json

    done = out / f"{unit}.json"
    if done.exists():
        return
    t = time.perf_counter()
    seed = int(unit.rsplit("_s", 1)[1])
    lam = unit_lambda(unit)
    if unit.startswith("fixed_s"):
        data = fixed_unit(args, env, klst, seed)
    elif unit.startswith("kind_s"):
        data = kind_unit(args, env, seed)
    elif unit.startswith("curve_s"):
        data = curve_unit(args, out, env, klst, seed)
    elif unit.startswith("online"):
        data = online_unit(args, out, env, klst, None if lam is None else float(lam), seed)
    else:
        algo = unit.split("_")[1]
        data = rl_unit(args, out, env, klst, algo, float(lam), seed)  # type: ignore[arg-type]
    data["episode_seeds"] = episode_seeds(args, seed)
    data["settings"] = unit_settings(args, unit)
    if not unit.startswith("kind"):
        data["klst_routing"] = klst_digest(args, klst)
    write_json({**data, "wall_s": time.perf_counter() - t}, done)


def _stop_message(signum: int) -> str:
    return f"stopped by signal {signum}: units that finished are kept (rerun to resume)"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(_stop_message(signum))


def _unit_failed(out: Path, unit: str, status: int | str, cmd: list[str]) -> SystemExit:
    """The error of a failed unit: its exit status, its log's last lines and its command."""
    log = out / f"{unit}.log"
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else ["(no log)"]
    return SystemExit(
        f"unit {unit} failed (exit status {status}); its log {log} ends:\n"
        + "\n".join(tail)
        + f"\ncommand: {shlex.join(cmd)}"
    )


def _unit_command(argv: list[str], klst: Path, unit: str) -> list[str]:
    """The command line of one unit's own process (--jobs and --ray-address)."""
    script = str(Path(__file__).resolve())
    return [sys.executable, script, *argv, "--klst", str(klst), "--only-unit", unit, "--no-results-md"]  # fmt: skip


def _die_with_parent() -> None:
    """A unit process ends (SIGTERM) when the process that started it does, however that one
    ends (SIGKILL, a Ray worker killed with its instance): no unit plays on as an orphan.
    Linux only (``prctl``); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    from training.pools import PARENT_PID_ENV

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    parent = os.environ.get(PARENT_PID_ENV)  # who started it (a runner may be PID 1)
    if parent and os.getppid() != int(parent):  # it ended before the prctl call
        raise SystemExit("the process that started this unit has ended")


#: the environment variables a unit's Ray task hands on to the unit (a cluster node's own
#: environment may lack them); everything else is the node's
UNIT_ENV_PREFIXES = ("PRECISION_GYM_", "ALFWORLD_", "WEBSHOP_", "HF_", "TOKENIZERS_")


def run_units_on_ray(args: Args, argv: list[str], out: Path, klst: Path, todo: list[str]) -> None:
    """``--ray-address``: every unit a Ray task of one CPU (the instance runs as many at once
    as it has CPUs), each in its own process as under ``--jobs``; the same failure and stop
    rules: a failed unit, Ctrl-C or SIGTERM cancels the rest (their processes stopped)."""
    from tqdm.auto import tqdm

    from precision_gym.distributed import ray_session
    from training.pools import run_logged

    env = {k: v for k, v in os.environ.items() if k.startswith(UNIT_ENV_PREFIXES)}
    with ray_session(args.ray_address) as ray:
        task = ray.remote(num_cpus=1, max_retries=0)(run_logged)
        refs = {}
        for unit in todo:
            cmd = _unit_command(argv, klst, unit)
            log = str((out / f"{unit}.log").resolve())
            refs[task.remote(cmd, log, cwd=os.getcwd(), env=env)] = (unit, cmd)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        bar = tqdm(total=len(todo), desc=f"units (Ray, {cpus} CPUs)", unit="unit")
        signals: list[int] = []

        def on_sigterm(signum: int, frame: Any) -> None:
            signals.append(signum)
            _exit_on_sigterm(signum, frame)

        on_term = signal.signal(signal.SIGTERM, on_sigterm)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    unit, cmd = refs[ref]
                    try:
                        status = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        status = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    if status != 0:
                        raise _unit_failed(out, unit, status, cmd)
                    bar.update(1)
        except SystemExit:
            if signals:  # a signal in ray.wait reaches here as SystemExit(1): say which
                raise SystemExit(_stop_message(signals[0])) from None
            raise
        finally:
            signal.signal(signal.SIGTERM, on_term)
            bar.close()
            for ref in pending:  # KeyboardInterrupt in the task: it stops its unit's process
                ray.cancel(ref)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=60)


def run_units(args: Args, argv: list[str], out: Path, env: Any, klst: Path, todo: list[str]):
    """Units in ``--jobs`` local processes (each one thread, its output in ``OUT/UNIT.log``),
    as Ray tasks (``--ray-address``), or here one after another; a progress bar counts the
    finished ones. A unit that fails stops the run: the others still running are stopped too
    (their units rerun on resume), and the error names the unit, its log and the log's last
    lines."""
    from tqdm.auto import tqdm

    from training.pools import child_environment

    todo = [u for u in todo if not (out / f"{u}.json").exists()]
    if todo and getattr(args, "ray_address", ""):
        run_units_on_ray(args, argv, out, klst, todo)
        return
    if args.jobs <= 1:
        for unit in todo:
            run_unit(args, out, env, klst, unit)
        return
    running: dict[str, subprocess.Popen] = {}
    bar = tqdm(total=len(todo), desc=f"units ({args.jobs} at once)", unit="unit")
    # `kill` or a scheduler's SIGTERM stops the units too, as Ctrl-C does (below: finally)
    on_term = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        while todo or running:
            while todo and len(running) < args.jobs:
                unit = todo.pop(0)
                with (out / f"{unit}.log").open("w") as log:  # the child holds its own copy
                    cmd = _unit_command(argv, klst, unit)
                    running[unit] = subprocess.Popen(
                        cmd, stdout=log, stderr=subprocess.STDOUT, env=child_environment()
                    )
                bar.set_postfix_str(", ".join(running))
            time.sleep(1)
            for unit, proc in [(u, p) for u, p in running.items() if p.poll() is not None]:
                del running[unit]
                if proc.returncode:
                    raise _unit_failed(out, unit, proc.returncode, proc.args)
                bar.update(1)
                bar.set_postfix_str(", ".join(running))
    finally:
        signal.signal(signal.SIGTERM, on_term)
        bar.close()
        for proc in running.values():  # a failed sibling, Ctrl-C or SIGTERM: stop what is left
            proc.terminate()
        for proc in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ----------------------------------------------------------------------------- 5. statistics
def reused_rows(out: Path, unit_names: list[str]) -> dict[str, int]:
    """How many GRPO rows the units took over from KL-ST (:func:`evaluate_or_reuse`), of how
    many GRPO rows in all."""
    n = {"reused": 0, "grpo_rows": 0}
    for u in unit_names:
        data = json.loads((out / f"{u}.json").read_text())
        n["reused"] += len(data.get("reused", {}))
        n["grpo_rows"] += sum(name.startswith("GRPO") for name in data["results"])
    return n


def unit_times(out: Path, unit_names: list[str]) -> float:
    """Seconds the units took, each in its own process, summed over every invocation (a resumed
    run's own wall time leaves out the units that finished before it)."""
    return sum(json.loads((out / f"{u}.json").read_text()).get("wall_s", 0.0) for u in unit_names)


def load_records(out: Path, unit_names: list[str]) -> dict[str, list[Any]]:
    """Router name -> its episode records over the seeds; RL routers keyed ``name@lambda``."""
    from training.evaluation import EpisodeRecord

    records: dict[str, list[Any]] = {}
    for unit in unit_names:
        data = json.loads((out / f"{unit}.json").read_text())
        lam = unit_lambda(unit)
        suffix = "" if lam is None else "@" + lam
        for name, res in data["results"].items():
            recs = [EpisodeRecord(**r) for r in res["records"]]
            records.setdefault(name + suffix, []).extend(recs)
    return records


def point(recs: list[Any], lam: float, n_boot: int) -> dict[str, Any]:
    """One router point at ``lam``: success, EP time on successes, HP, utility, each a mean
    over tasks (of per-task means over seeds) with its 95% bootstrap CI over tasks."""
    from training.stats import bootstrap_ci, per_task

    _, succ = per_task(recs, lambda r: float(r.won))
    _, util = per_task(recs, lambda r: utility(r, lam))
    hp_tasks, high = per_task(recs, lambda r: r.high_decisions)
    _, dec = per_task(recs, lambda r: r.decisions)
    hp = np.where(dec > 0, high / np.maximum(dec, 1e-9), 0.0)
    won = [r for r in recs if r.won]
    out = {
        "success": bootstrap_ci(succ, n_boot=n_boot).as_dict(),
        "utility": bootstrap_ci(util, n_boot=n_boot).as_dict(),
        "hp": bootstrap_ci(hp, n_boot=n_boot).as_dict(),
        "ep_time": None,
        "tasks": len(hp_tasks),
        "episodes": len(recs),
    }
    if won:
        _, times = per_task(won, lambda r: r.episode_time_s)
        out["ep_time"] = bootstrap_ci(times, n_boot=n_boot).as_dict()
    return out


def per_task_utility(recs: list[Any], lam: float) -> np.ndarray:
    from training.stats import per_task

    return per_task(recs, lambda r: utility(r, lam))[1]


def headroom_table(args: Args, records: dict[str, list[Any]], lam: float) -> dict[str, Any]:
    """Step 3: how far the oracle is above KL-ST at its best K, on the same tasks; and how
    far the attainable ceiling is (the best of the kind oracle and the constant routers),
    overall and, per kind-oracle point, against KL-ST at the same HP."""
    from training.stats import headroom, paired_bootstrap_diff

    klst = {f"KL-ST K={k:g}": per_task_utility(records[f"KL-ST K={k:g}"], lam)
            for k in args.budgets}  # fmt: skip
    best = max(klst, key=lambda n: klst[n].mean())
    kinds = [n for n in kind_names(args) if n in records]
    utilities = {n: per_task_utility(records[n], lam) for n in (*FIXED, *kinds) if n in records}
    utilities[best] = klst[best]
    ceiling = "oracle" if "oracle" in utilities else "always-high"
    table = headroom(utilities, start=best, ceiling=ceiling, n_boot=args.n_boot)
    table["lambda"] = lam
    if kinds:  # the ceiling of routers that read observations (chosen on these tasks: upper)
        pool = [*kinds, "always-high", "always-low"]
        attainable = max(pool, key=lambda n: utilities[n].mean())
        table["attainable"] = attainable
        table["attainable_gap"] = paired_bootstrap_diff(
            utilities[attainable], utilities[best], n_boot=args.n_boot
        ).as_dict()
        curve = {n: per_task_utility(records[n], lam) for n in klst_points(args, records)}
        if len(curve) > len(klst):  # KL-ST's best measured point, between its K points too
            top = max(curve, key=lambda n: curve[n].mean())
            table["best_on_curve"] = top
            table["attainable_gap_curve"] = paired_bootstrap_diff(
                utilities[attainable], curve[top], n_boot=args.n_boot
            ).as_dict()
        table["kind_matched_hp"] = {
            n: {"hp": point_hp(records[n]),
                **matched_hp_diff(args, records, n, lam)}
            for n in kinds
        }  # fmt: skip
    return table


def matched_hp_diff(
    args: Args, records: dict[str, list[Any]], name: str, lam: float, family: int = 1
) -> dict[str, Any]:
    """``name`` minus KL-ST at the same realised HP, run by run, as a paired bootstrap CI
    over tasks: each run's routers (seed s: its episode seeds) against KL-ST's curve on the
    same episodes (its K points and, with ``--curve-points``, its thresholds between them),
    interpolated at that run's HP between the two points that bracket it
    (``training.stats.curve_at_runs``). A run that shipped its start reads its start's own
    point, so it adds exactly 0, whatever the curve does between its points. With
    ``family`` > 1 it also gives the simultaneous 95% interval over that many comparisons
    (Bonferroni: at 1 - 0.05 / family), as ``simultaneous``."""
    from training.stats import curve_at_runs

    runs, mine_by_run = [], []
    for seed in args.seeds:
        mine = [r for r in records[name] if run_seed(args, r.seed) == seed]
        if not mine:
            continue
        curve = []
        for n in klst_points(args, records):
            theirs = [r for r in records[n] if run_seed(args, r.seed) == seed]
            curve.append((point_hp(theirs), per_task_utility(theirs, lam)))
        runs.append((point_hp(mine), curve))
        mine_by_run.append(per_task_utility(mine, lam))
    ref, inside = curve_at_runs(runs)  # outside a run's curve: its nearest end
    mine = np.mean(mine_by_run, axis=0)
    return {**diff_with_family(mine, ref, args.n_boot, family), "interpolated": inside}


def diff_with_family(a: np.ndarray, b: np.ndarray, n_boot: int, family: int) -> dict[str, Any]:
    """``mean(a - b)`` with its paired bootstrap 95% CI over tasks and, with ``family`` > 1,
    its simultaneous 95% interval over that many comparisons (``simultaneous``: Bonferroni,
    at 1 - 0.05 / family)."""
    from training.stats import paired_bootstrap_diff, simultaneous_level

    out = paired_bootstrap_diff(a, b, n_boot=n_boot).as_dict()
    if family > 1:
        sim = paired_bootstrap_diff(a, b, level=simultaneous_level(family), n_boot=n_boot)
        out["simultaneous"] = {**sim.as_dict(), "family": family}
    return out


def curve_names(records: dict[str, list[Any]]) -> list[str]:
    """The names of KL-ST's extra curve points (:func:`curve_unit`) among ``records``."""
    return [n for n in records if n.startswith(CURVE)]


def klst_points(args: Args, records: dict[str, list[Any]]) -> list[str]:
    """Every measured point of KL-ST's curve: its K points, then its thresholds between."""
    return [f"KL-ST K={k:g}" for k in args.budgets] + curve_names(records)


def klst_curve(args: Args, records: dict[str, list[Any]], lam: float) -> list[dict[str, Any]]:
    """KL-ST's measured curve at ``lam``: its K points and its thresholds between them, each
    a :func:`point` with its name and its HP pooled over decisions (``hp_pooled``, the
    curve's axis in :func:`matched_hp_diff`), in that order."""
    rows = [
        {"name": n, "hp_pooled": point_hp(records[n]), **point(records[n], lam, args.n_boot)}
        for n in klst_points(args, records)
    ]
    return sorted(rows, key=lambda r: r["hp_pooled"])


def point_hp(recs: list[Any]) -> float:
    decisions = sum(r.decisions for r in recs)
    return sum(r.high_decisions for r in recs) / decisions if decisions else 0.0


def average_ranks(points: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Paper Sec. 5.3: rank by success (desc) and by EP time (asc), ties share the mean rank;
    a point's score is the mean of its two ranks (lower is better)."""

    def ranks(values: np.ndarray) -> np.ndarray:
        order = values.argsort(kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(1, len(values) + 1)
        for v in np.unique(values):
            r[values == v] = r[values == v].mean()
        return r

    names = list(points)
    success = np.array([-round(points[n]["success"]["value"], 6) for n in names])
    times = np.array(
        [round(points[n]["ep_time"]["value"], 6) if points[n]["ep_time"] else np.inf
         for n in names]
    )  # fmt: skip
    avg = (ranks(success) + ranks(times)) / 2.0
    return {n: float(a) for n, a in zip(names, avg, strict=True)}


def analyse(args: Args, out: Path) -> dict[str, Any]:
    from training.stats import paired_bootstrap_diff

    records = load_records(out, units(args))
    # GRPO - KL-ST (matched HP; both held at K) is read at every (K, lambda): one family each
    n_grpo = len(args.budgets) * len(args.lambdas)
    by_lambda: dict[str, Any] = {}
    for lam in args.lambdas:
        tag = f"@{lam:g}"
        names = [n for n in records if "@" not in n and not n.startswith(CURVE)]
        names += [n for n in records if n.endswith(tag)]
        points = {n.removesuffix(tag): point(records[n], lam, args.n_boot) for n in names}
        grpo_vs_klst = {}
        for k in args.budgets if "grpo" in args.algos else ():
            g, kl = f"GRPO K={k:g}{tag}", f"KL-ST K={k:g}"
            grpo_vs_klst[f"{k:g}"] = {
                "same_k": paired_bootstrap_diff(
                    per_task_utility(records[g], lam), per_task_utility(records[kl], lam),
                    n_boot=args.n_boot,
                ).as_dict(),
                "matched_hp": matched_hp_diff(args, records, g, lam, family=n_grpo),
                "grpo_hp": point_hp(records[g]),
                "klst_hp": point_hp(records[kl]),
            }  # fmt: skip
            if f"{kl} online" in records:  # both held at K: the same HP, no interpolation
                g_on, kl_on = records[f"GRPO K={k:g} online{tag}"], records[f"{kl} online"]
                grpo_vs_klst[f"{k:g}"] |= {
                    "online": diff_with_family(
                        per_task_utility(g_on, lam), per_task_utility(kl_on, lam),
                        args.n_boot, n_grpo,
                    ),
                    "grpo_hp_online": point_hp(g_on),
                    "klst_hp_online": point_hp(kl_on),
                }  # fmt: skip
        start = f"KL-ST K={args.sample_budget:g}"
        ppo_vs_start = {}
        for seed in (
            args.seeds if "ppo" in args.algos else ()
        ):  # PPO starts exactly at KL-ST's sample-budget point
            ppo = [r for r in records[f"PPO{tag}"] if run_seed(args, r.seed) == seed]
            ref = [r for r in records[start] if run_seed(args, r.seed) == seed]
            ppo_vs_start[str(seed)] = paired_bootstrap_diff(
                per_task_utility(ppo, lam), per_task_utility(ref, lam), n_boot=args.n_boot
            ).as_dict()
        ppo_pooled = {}
        if "ppo" in args.algos:  # every seed's episodes (per-task means over seeds)
            ppo, hp = records[f"PPO{tag}"], point_hp(records[f"PPO{tag}"])
            ppo_pooled = {
                "vs_start": paired_bootstrap_diff(
                    per_task_utility(ppo, lam), per_task_utility(records[start], lam),
                    n_boot=args.n_boot,
                ).as_dict(),
                "matched_hp": matched_hp_diff(args, records, f"PPO{tag}", lam),
                "ppo_hp": hp,
                "start_hp": point_hp(records[start]),
            }  # fmt: skip
        pool = {  # the paper's ranking: fixed tau_K points
            n: p
            for n, p in points.items()
            if n.startswith(("KL-ST", "GRPO")) and not n.endswith(" online")
        }
        pool |= {n: points[n] for n in ("always-high", "always-low")}
        by_lambda[f"{lam:g}"] = {
            "headroom": headroom_table(args, records, lam),
            "klst_curve": klst_curve(args, records, lam) if curve_names(records) else [],
            "budget_selection": budget_selection(args, out, lam),
            "confirmations": confirmations(args, out, lam),
            "points": points,
            "grpo_vs_klst": grpo_vs_klst,
            "ppo_vs_start": ppo_vs_start,
            "ppo_pooled": ppo_pooled,
            "avg_rank": average_ranks(pool),
            "avg_rank_with_ppo": average_ranks({**pool, "PPO": points["PPO"]})
            if "PPO" in points
            else {},
        }
    return by_lambda


def budget_selection(args: Args, out: Path, lam: float) -> dict[str, Any]:
    """Seed -> each GRPO run's per-budget choice (``budget_selection.json``; a run that kept
    its start router, or ran without the selection, has none and ships ``router.pt``)."""
    found = {}
    for seed in args.seeds if "grpo" in args.algos else ():
        path = out / f"grpo_l{lam:g}_s{seed}" / "budget_selection.json"
        if path.exists():
            data = json.loads(path.read_text())
            found[str(seed)] = {k: {"router": c["router"], "gain": c["gain"]}
                                for k, c in data["budgets"].items()}  # fmt: skip
    return found


def confirmations(args: Args, out: Path, lam: float) -> dict[str, Any]:
    """``algo seed`` -> the router each RL run kept and how it fared: its paired gain over the
    start on the keep-best episodes it was chosen on, and on the fresh confirmation episodes
    (``confirmation.json``; none where the run kept its start or ran without confirmation)."""
    from training.selection import gain_over_start

    found: dict[str, Any] = {}
    for algo, seed in itertools.product(args.algos, args.seeds):
        run = out / f"{algo}_l{lam:g}_s{seed}"
        if not (run / "summary.json").exists():
            continue
        summary = json.loads((run / "summary.json").read_text())
        evals = summary.get("evaluations") or []
        if not evals:
            continue
        step = "update" if algo == "grpo" else "env_steps"
        conf = summary.get("confirmation")
        kept = conf[step] if conf else summary.get(f"selected_{step}")
        row = next((e for e in evals if e[step] == kept), evals[0])
        entry: dict[str, Any] = {"kept": kept, "shipped": "start" if kept == 0 else "refined"}
        if args.keep_best_rule == "final" and len(evals) > 1:  # one candidate: the last router
            row = evals[-1]
            entry["candidate"] = row[step]
        if row is not evals[0] and args.keep_best_rule in ("paired", "final"):
            entry["selection_gain"] = gain_over_start(
                row, evals[0], level=args.keep_best_level
            ).as_dict()
        if conf:
            entry |= {"confirmation_gain": conf["gain"], "shipped": conf["router"]}
        found[f"{algo.upper()} seed {seed}"] = entry
    return found


def confirmation_lines(args: Args, found: dict[str, Any]) -> list[str]:
    if not found:
        return []
    level = 2 * args.keep_best_level - 1
    fresh = (
        f"and on {args.confirm_episodes} fresh {selection_split(args)} episodes "
        "(`--confirm-episodes`)"
        if args.confirm_episodes
        else "no confirmation (`--confirm-episodes 0`)"
    )
    final = args.keep_best_rule == "final"
    lines = [
        "",
        f"Kept routers (refined - start utility, {level:.0%} CI: on the {args.rl_eval_episodes} "
        f"keep-best episodes they were chosen on, {fresh}"
        + (
            "; under the 'final' rule the one candidate is the last router, shipped only "
            "when its bound is above 0, and its gain is shown whichever ships"
            if final
            else ""
        )
        + "):",
        "",
        "| run | kept (update / step) | on the keep-best episodes | on fresh episodes | ships |",
        "|---|---:|---|---|---|",
    ]
    for name, e in found.items():
        sel, conf = e.get("selection_gain"), e.get("confirmation_gain")
        cand = f" (candidate: {e['candidate']})" if "candidate" in e else ""
        lines.append(
            f"| {name} | {e['kept']}{cand} | {ci(sel) if sel else '-'} | "
            f"{ci(conf) if conf else '-'} | {e['shipped']} |"
        )
    return lines


# ----------------------------------------------------------------------------- 5. figures
def frontier_plot(args: Args, by_lambda: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import save_figure

    fig, axes = plt.subplots(1, len(by_lambda), figsize=(5.2 * len(by_lambda), 4.6), squeeze=False)
    styles = {"KL-ST": ("C0", "o"), "GRPO": ("C1", "s"), "PPO": ("C2", "D")}
    styles |= {"KL-ST online": ("C0", "x"), "GRPO online": ("C1", "+")}  # K held online
    # one colour per fixed router (indexing by position gave oracle and random the same one)
    styles.update({n: (c, "^") for n, c in zip(FIXED, ("C3", "C4", "C5", "C7"), strict=True)})
    for ax, (lam, data) in zip(axes[0], by_lambda.items(), strict=True):
        for family, held in itertools.product(("KL-ST", "GRPO"), (False, True)):
            pts = sorted(  # each family's frontier over K: fixed tau_K solid, held online dashed
                (p["ep_time"]["value"], 100 * p["success"]["value"])
                for n, p in data["points"].items()
                if n.startswith(family) and n.endswith(" online") == held and p["ep_time"]
            )
            curve = [r for r in data.get("klst_curve", []) if r["ep_time"]]
            if family == "KL-ST" and not held and curve:  # its measured curve, in HP order
                pts = [(r["ep_time"]["value"], 100 * r["success"]["value"]) for r in curve]
                extra = [p for p, r in zip(pts, curve, strict=True) if r["name"].startswith(CURVE)]
                if extra:
                    ax.plot(*zip(*extra, strict=True), "o", mfc="none", ms=3, color="C0",
                            alpha=0.6, label="KL-ST (thresholds between K)")  # fmt: skip
            if pts:
                line = "--" if held else "-"
                ax.plot(*zip(*pts, strict=True), line, color=styles[family][0], alpha=0.5)
        for name, p in data["points"].items():
            if not p["ep_time"]:
                continue
            family = name.split()[0] + (" online" if name.endswith(" online") else "")
            color, marker = styles.get(family, ("C8", "v"))
            x, s = p["ep_time"], p["success"]
            ax.errorbar(
                x["value"], 100 * s["value"],
                xerr=[[x["value"] - x["lo"]], [x["hi"] - x["value"]]],
                yerr=[[100 * (s["value"] - s["lo"])], [100 * (s["hi"] - s["value"])]],
                fmt=marker, color=color, capsize=2, ms=4, label=name,
            )  # fmt: skip
        ax.set_title(f"lambda = {lam}/s")
        ax.set_xlabel("EP time on successes (s, modeled)")
        ax.set_ylabel("success (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    fig.suptitle(
        f"{args.env_id} / {args.eval_split}\nfrontiers with 95% CIs [SIMULATED]", fontsize=9
    )
    save_figure(fig, path, dpi=120)


def learning_curves(args: Args, out: Path, path: Path) -> dict[str, Any]:
    """Training-episode utility vs env steps, binned, mean +- std over seeds, per lambda."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import save_figure

    curves: dict[str, Any] = {}
    fig, axes = plt.subplots(1, len(args.lambdas), figsize=(5.0 * len(args.lambdas), 3.8),
                             squeeze=False)  # fmt: skip
    for ax, lam in zip(axes[0], args.lambdas, strict=True):
        steps = args.env_steps if lam == args.main_lambda else args.other_env_steps
        edges = np.linspace(0, steps * 1.1, 9)
        curves[f"{lam:g}"] = {}
        for algo in (a.upper() for a in args.algos):
            per_seed = []
            for seed in args.seeds:
                run = out / f"{algo.lower()}_l{lam:g}_s{seed}"
                if algo == "GRPO":
                    rows = [json.loads(x) for x in (run / "log.jsonl").open()]
                    x = np.array([r["env_steps"] for r in rows], dtype=float)
                    y = np.array([r["mean_return"] for r in rows], dtype=float)
                    w = np.array([r["episodes"] for r in rows], dtype=float)
                else:
                    rows = [json.loads(x) for x in (run / "episodes.jsonl").open()]
                    x = np.array([r["env_steps"] for r in rows], dtype=float)
                    y = np.array([r["return"] for r in rows], dtype=float)
                    w = np.ones(len(rows))
                binned = []
                for lo, hi in itertools.pairwise(edges):
                    sel = (x > lo) & (x <= hi)
                    binned.append(np.average(y[sel], weights=w[sel]) if sel.any() else np.nan)
                per_seed.append(binned)
            arr = np.array(per_seed, dtype=float)
            with warnings.catch_warnings():  # a bin no seed reached stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(arr, axis=0), np.nanstd(arr, axis=0)
            curves[f"{lam:g}"][algo] = {
                "env_steps": edges[1:].tolist(), "mean": mean.tolist(), "std": std.tolist(),
            }  # fmt: skip
            ax.plot(edges[1:], mean, marker="o", ms=3, label=algo)
            ax.fill_between(edges[1:], mean - std, mean + std, alpha=0.2)
        ax.set_title(f"lambda = {lam:g}/s")
        ax.set_xlabel("env steps (routing decisions)")
        ax.set_ylabel("training-episode utility")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{args.env_id}: learning curves\nmean ± std over seeds [SIMULATED]", fontsize=9)
    save_figure(fig, path, dpi=120)
    return curves


# ----------------------------------------------------------------------------- 5. report
def ci(d: dict[str, float] | None, digits: int = 3, scale: float = 1.0) -> str:
    if not d:
        return "-"
    return f"{scale * d['value']:.{digits}f} [{scale * d['lo']:.{digits}f}, {scale * d['hi']:.{digits}f}]"


def headroom_lines(by_lambda: dict[str, Any]) -> list[str]:
    lines = [
        "### Headroom (before any RL result)",
        "",
        "| lambda | always-high | always-low | oracle | KL-ST at its best K | gap: ceiling - best "
        "KL-ST (95% CI) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for lam, data in by_lambda.items():
        h = data["headroom"]
        r = h["routers"]
        lines.append(
            f"| {lam} | {ci(r.get('always-high'))} | {ci(r.get('always-low'))} | "
            f"{ci(r.get('oracle'))} | {h['start']}: {ci(r[h['start']])} | "
            f"{h['ceiling']} - start: {ci(h['gap'])} |"
        )
    if not any("attainable" in d["headroom"] for d in by_lambda.values()):
        return lines
    lines += [
        "",
        "Attainable ceiling: the SIMULATED oracle knows which states are critical; a router "
        "that reads observations cannot, on unseen tasks. The kind oracle knows what such a "
        "router could hope to infer (each state's chance of being critical, from its kind and "
        "task type, and whether the episode has derailed). Its best point, or a constant "
        "router, chosen on these tasks (an estimate of the attainable, not a strict bound):",
        "",
    ]
    on_curve = any("best_on_curve" in d["headroom"] for d in by_lambda.values())
    lines += [
        "| lambda | attainable ceiling | its utility | gap: attainable - best KL-ST (95% CI) | "
        + ("gap: attainable - best point of KL-ST's curve | " if on_curve else "")
        + "kind oracle - KL-ST at the same HP |",
        "|---:|---|---:|---:|" + ("---|" if on_curve else "") + "---|",
    ]
    for lam, data in by_lambda.items():
        h = data["headroom"]
        if "attainable" not in h:
            continue
        matched = "; ".join(
            f"{n.removeprefix('kind-oracle')} (HP {m['hp']:.2f}): {ci(m)}{_star(m)}"
            + ("" if m["interpolated"] else " (outside the KL-ST curve)")
            for n, m in h["kind_matched_hp"].items()
        )
        curve_gap = ""
        if on_curve:
            g = h["attainable_gap_curve"]
            curve_gap = f"{h['best_on_curve'].removeprefix('KL-ST ')}: {ci(g)}{_star(g)} | "
        lines.append(
            f"| {lam} | {h['attainable']} | {ci(h['routers'][h['attainable']])} | "
            f"{ci(h['attainable_gap'])}{_star(h['attainable_gap'])} | {curve_gap}{matched} |"
        )
    curve = next(iter(by_lambda.values())).get("klst_curve")
    if not curve:
        return [
            *lines,
            "",
            'KL-ST "at the same HP" and "best KL-ST" use only its points at `--budgets`, '
            "joined by straight lines: where its curve bends up between two of them, both "
            "overstate the gap (`--curve-points` measures the curve between them).",
        ]
    return [*lines, "", *curve_lines(by_lambda)]


def curve_lines(by_lambda: dict[str, Any]) -> list[str]:
    """KL-ST's measured curve: every point by HP, with its utility at each lambda."""
    lams = list(by_lambda)
    rows = {lam: by_lambda[lam]["klst_curve"] for lam in lams}
    top = any(r["name"] == f"{CURVE}0" for r in rows[lams[0]])
    extra = sum(r["name"].startswith(CURVE) for r in rows[lams[0]]) - top
    lines = [
        f"KL-ST's measured curve: its K points and {extra} thresholds on p(high) between "
        "them and past its highest K (`--curve-points`, `--curve-top`)"
        + (", and its top end, threshold 0 (every decision high)" if top else "")
        + ", on the same episodes. Every figure 'at the same HP' (the "
        "kind oracle's above, GRPO's and PPO's below) reads KL-ST off this curve, "
        "interpolated only between neighbouring points, along its HP pooled over decisions "
        "(the HP of those figures), run by run: each run's router against the curve on that "
        "run's episodes at that run's HP, the differences then averaged over runs (a run that "
        "ships its start reads its own point: exactly 0). 'Best KL-ST' is its best K point, "
        "the start an RL run "
        "refines; its best point on this curve (chosen on these tasks, like the attainable "
        "ceiling) is one a calibration at another K could reach without RL.",
        "",
        "| KL-ST point | HP, pooled | HP, mean over tasks | success % | "
        + " | ".join(f"utility, lambda {lam}" for lam in lams)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(lams),
    ]
    for i, r in enumerate(rows[lams[0]]):
        lines.append(
            f"| {r['name'].removeprefix('KL-ST ')} | {r['hp_pooled']:.2f} | {ci(r['hp'], 2)} | "
            f"{ci(r['success'], 1, 100)} | "
            + " | ".join(ci(rows[lam][i]["utility"]) for lam in lams)
            + " |"
        )
    return lines


def reused_sentence(n: dict[str, int]) -> str:
    if not n.get("reused"):
        return ""
    return (
        f" {n['reused']} of the {n['grpo_rows']} GRPO rows are KL-ST's rows on the same "
        "episodes, not replayed: there the GRPO run shipped its start, which routes exactly as "
        "KL-ST at that K (same weights, same threshold; each unit's `reused` names them)."
    )


def write_report(args: Args, out: Path, by_lambda: dict[str, Any], extra: dict[str, Any]) -> str:
    from precision_gym.io import atomic_write_text
    from training.evaluation import write_json

    write_json({"args": asdict(args), "by_lambda": by_lambda, **extra}, out / "results.json")
    n_tasks = next(iter(by_lambda.values()))["points"]["always-high"]["tasks"]
    lines = [
        SECTION,
        "",
        f"SIMULATED precision pair ({extra['tiers']}): not real-LLM results. Produced by "
        f"`benchmarks/ppo_vs_grpo.py` on {extra['machine']}.",
        "",
        f"Command: `{extra['command']}`  ",
        f"Wall time: {extra['wall_time_s'] / 60:.1f} min for this invocation; the units' own "
        f"times (fixed routers, RL; one process each, earlier invocations included) add up to "
        f"{extra.get('unit_time_s', 0.0) / 60:.1f} min. Evaluation: {n_tasks} {args.eval_split} "
        f"tasks x seeds {list(args.seeds)}"
        + (
            f" (each run on episode seeds s, s+{max(args.seeds) + 1}, ...: "
            f"{args.eval_seeds_per_run} per run)"
            if args.eval_seeds_per_run > 1
            else ""
        )
        + "; values are means over tasks (each averaged over seeds) with 95% "
        "percentile-bootstrap CIs over tasks; differences are paired over tasks."
        + reused_sentence(extra.get("reused_rows", {})),
        "",
        f"Budget: {args.env_steps} routing decisions per algorithm per seed at lambda = "
        f"{args.main_lambda:g} ({args.other_env_steps} at the other lambdas). Both RL methods "
        f"start from the same KL-ST router at its calibrated K = {args.sample_budget:g} point; "
        f"GRPO: G = {args.group_size}, {args.tasks_per_batch} tasks per update, lr "
        f"{args.grpo_lr:g}, advantage norm {args.grpo_advantage_norm}, KL coef "
        f"{args.grpo_kl_coef:g}"
        + (
            f", step-level advantage (GiGPO) weight {args.grpo_step_weight:g}, gamma "
            f"{args.grpo_step_gamma:g}"
            if args.grpo_step_weight
            else ""
        )
        + (
            f", budget held at K = {args.sample_budget:g} during training (the high-tier "
            "shift re-centred after every update)"
            if args.grpo_hold_budget
            else ""
        )
        + f"; PPO: n_steps {args.ppo_n_steps}, batch {args.ppo_batch_size}, "
        f"encoder and action head from the router. KL collection and RL train on "
        f"{args.train_split} tasks. Both keep their best router on "
        f"{args.rl_eval_episodes} {selection_split(args)} episodes (start included) by the "
        f"{args.keep_best_rule!r} keep-best rule"
        + (
            f": a later router only when its paired one-sided {args.keep_best_level:.0%} "
            "bootstrap bound over the start is above zero"
            if args.keep_best_rule == "paired"
            else ""
        )
        + (
            f"; a kept later router ships only if the rule holds again on "
            f"{args.confirm_episodes} fresh {selection_split(args)} episodes "
            "(`--confirm-episodes`)."
            if args.confirm_episodes
            else "."
        ),
        "",
        *headroom_lines(by_lambda),
        "",
    ]
    for lam, data in by_lambda.items():
        lines += [
            f"### lambda = {lam}/s",
            "",
            "| router | success % | EP time (s, successes) | HP fraction | utility | avg rank "
            "| avg rank (+ PPO) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, p in data["points"].items():
            rank = data["avg_rank"].get(name)
            lines.append(
                f"| {name} | {ci(p['success'], 1, 100)} | {ci(p['ep_time'], 2)} | "
                f"{ci(p['hp'], 2)} | {ci(p['utility'])} | "
                f"{_rank(rank)} | {_rank(data['avg_rank_with_ppo'].get(name))} |"
            )
        lines += confirmation_lines(args, data["confirmations"])
        if data["grpo_vs_klst"]:
            lines += grpo_lines(args, data)
        if data["ppo_vs_start"]:
            lines += [
                "",
                f"PPO - its start (KL-ST K={args.sample_budget:g}) per seed: "
                + ", ".join(
                    f"seed {s}: {ci(d)}{_star(d)}" for s, d in data["ppo_vs_start"].items()
                ),
            ]
        if data.get("ppo_pooled"):
            d = data["ppo_pooled"]
            m = d["matched_hp"]
            lines.append(
                f"PPO, seeds pooled (HP {d['ppo_hp']:.2f}; start {d['start_hp']:.2f}): - its start "
                f"{ci(d['vs_start'])}{_star(d['vs_start'])}; - KL-ST at the same HP "
                f"{ci(m)}{_star(m)}" + ("" if m["interpolated"] else " (outside the KL-ST curve)")
            )
        lines.append("")
    lines += [f"Plots: `{out}/frontiers.png`, `{out}/learning_curves.png`.", ""]
    text = "\n".join(lines)
    atomic_write_text(out / "results.md", text)
    return text


def grpo_lines(args: Args, data: dict[str, Any]) -> list[str]:
    """GRPO - KL-ST at the same K, at matched HP and (``--online-step``) both held at K; the
    per-budget choice of each seed's run first."""
    from training.stats import simultaneous_level

    lines = [
        *selection_lines(args, data["budget_selection"]),
        "",
    ]
    family = max([g["matched_hp"].get("simultaneous", {}).get("family", 1)
                  for g in data["grpo_vs_klst"].values()], default=1)  # fmt: skip
    lines += [
        "GRPO - KL-ST utility (95% CI; * = excludes 0"
        + (  # one family of comparisons: every (K, lambda) cell of the run
            f"; 'simultaneous': 95% over all {family} (K, lambda) cells together, Bonferroni, "
            f"each at {simultaneous_level(family):.4f}: among that many comparisons one lone 95% CI "
            "that excludes 0 can be chance):"
            if family > 1
            else "):"
        ),
        "",
        "| K | KL-ST HP | GRPO HP | same K | matched HP |"
        + (" matched HP, simultaneous |" if family > 1 else ""),
        "|---:|---:|---:|---:|---:|" + ("---:|" if family > 1 else ""),
    ]
    for k, g in data["grpo_vs_klst"].items():
        same, matched = g["same_k"], g["matched_hp"]
        sim = matched.get("simultaneous")
        lines.append(
            f"| {k} | {g['klst_hp']:.2f} | {g['grpo_hp']:.2f} | {ci(same)}{_star(same)} | "
            f"{ci(matched)}{_star(matched)}"
            f"{'' if matched['interpolated'] else ' (outside the KL-ST curve)'} |"
            + (f" [{sim['lo']:.3f}, {sim['hi']:.3f}]{_star(sim)} |" if sim else "")
        )
    if args.online_step:
        lines += [
            "",
            f"Both held at K online (`--online-step {args.online_step:g}`): realised HP "
            "(pooled over decisions; * = more than 0.05 from K) and GRPO - KL-ST utility "
            "(95% CI; * = excludes 0"
            + (
                f"; 'simultaneous': 95% over all {family} (K, lambda) cells, as above):"
                if family > 1
                else "):"
            ),
            "",
            "| K | KL-ST HP online | GRPO HP online | GRPO - KL-ST, both online |"
            + (" simultaneous |" if family > 1 else ""),
            "|---:|---:|---:|---:|" + ("---:|" if family > 1 else ""),
        ]
        for k, g in data["grpo_vs_klst"].items():
            far = [abs(g[f"{w}_hp_online"] - float(k)) > 0.05 for w in ("klst", "grpo")]
            sim = g["online"].get("simultaneous")
            lines.append(
                f"| {k} | {g['klst_hp_online']:.2f}{'*' if far[0] else ''} | "
                f"{g['grpo_hp_online']:.2f}{'*' if far[1] else ''} | "
                f"{ci(g['online'])}{_star(g['online'])} |"
                + (f" [{sim['lo']:.3f}, {sim['hi']:.3f}]{_star(sim)} |" if sim else "")
            )
    return lines


def selection_lines(args: Args, chosen: dict[str, Any]) -> list[str]:
    """Which router each seed's GRPO run ships at each K, with the paired gain over the start
    on the keep-best episodes (its two-sided interval; the lower end is the rule's bound)."""
    if args.no_per_budget_selection:
        return ["", "GRPO ships its refined router at every K (`--no-per-budget-selection`)."]
    level = 2 * args.keep_best_level - 1
    episodes = (
        f"{args.confirm_episodes} fresh (confirmation)"
        if args.confirm_episodes
        else f"{args.rl_eval_episodes} keep-best"
    )
    lines = [
        "",
        f"GRPO per budget (`train-grpo --keep-best-per-budget`): at each K the refined router "
        f"only where the {args.keep_best_rule!r} rule prefers it to the start router, both "
        f"calibrated at K, on {episodes} {selection_split(args)} episodes (refined - "
        f"start utility, {level:.0%} CI); '-': the run shipped its start router.",
        "",
        "| K | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
        "|---:|" + "---|" * len(args.seeds),
    ]
    for k in args.budgets:
        cells = []
        for s in args.seeds:
            c = chosen.get(str(s), {}).get(f"{k:g}")
            cells.append("-" if c is None else f"{c['router']}: {ci(c['gain'])}")
        lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    return lines


def _rank(rank: float | None) -> str:
    return "-" if rank is None else f"{rank:.2f}"


def _star(d: dict[str, float]) -> str:
    return "*" if d["lo"] > 0 or d["hi"] < 0 else ""


def update_results_md(path: Path, section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (up to the next '## ') or append it."""
    from precision_gym.io import atomic_write_text

    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        tail = old[nxt + 1 :] if nxt >= 0 else ""
        new = old[:start] + section.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    atomic_write_text(path, new)


# ----------------------------------------------------------------------------- main
def check_splits(args: Args, env: Any) -> None:
    """Every split flag names a split of the env's task, before any work starts."""
    have = env.unwrapped.task.splits()
    for flag, split in (
        ("--train-split", args.train_split),
        ("--calib-split", args.calib_split),
        ("--select-split", selection_split(args)),
        ("--eval-split", args.eval_split),
    ):
        if split not in have:
            raise SystemExit(f"{flag} must be one of {have} for {args.env_id}, got {split!r}")


def use_plan_cache(args: Args, out: Path) -> None:
    """Name the planner's answer folder in the environment, where every ALFWorld task this
    process and its unit processes make finds it (``ALFWorldTask(plan_cache=...)``)."""
    from precision_gym.tasks.plan_store import PLAN_CACHE_ENV

    if args.plan_cache == "off":
        os.environ.pop(PLAN_CACHE_ENV, None)
    elif args.plan_cache or not os.environ.get(PLAN_CACHE_ENV):
        os.environ[PLAN_CACHE_ENV] = str((Path(args.plan_cache or out / "plan_cache")).absolute())


@contextlib.contextmanager
def connect_ray(address: str) -> Any:
    """``--ray-address``'s session, or a clear error before any work when it cannot start."""
    from precision_gym.distributed import ray_session

    stack = contextlib.ExitStack()
    try:
        ray = stack.enter_context(ray_session(address))
    except Exception as exc:  # ConfigError (no Ray), ConnectionError, ValueError (address)
        raise SystemExit(
            f"--ray-address {address}: no Ray instance ({type(exc).__name__}: {exc}); expected "
            "'local', 'auto' with a running instance, or 'ray://host:10001'"
        ) from None
    with stack:
        yield ray


def run_stages(args: Args, argv: list[str], out: Path, env: Any, klst: Path) -> None:
    """The units, stage by stage: the lambda-free routers first (the headroom is printed
    before any RL result), then RL training, then the held-K points of the GRPO routers."""
    # KL-ST held at K (online_s*) needs no lambda either: it runs here, so that a GRPO run
    # that ships its start finds KL-ST's rows (evaluate_or_reuse)
    pre_units = [u for u in units(args) if u.startswith(("fixed", "kind", "curve", "online_s"))]
    run_units(args, argv, out, env, klst, pre_units)
    records = load_records(out, pre_units)
    pre = {
        f"{lam:g}": {
            "headroom": headroom_table(args, records, lam),
            "klst_curve": klst_curve(args, records, lam) if curve_names(records) else [],
        }
        for lam in args.lambdas
    }
    print("\n".join(headroom_lines(pre)), flush=True)
    run_units(args, argv, out, env, klst, [u for u in units(args) if u.startswith("rl")])
    run_units(args, argv, out, env, klst, [u for u in units(args) if u.startswith("online_l")])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.only_unit:  # a unit's own process: it ends with the process that started it
        _die_with_parent()
    t0 = time.perf_counter()
    out = Path(args.out)
    from precision_gym.threads import configure_torch_threads
    from training.cli.common import make_env

    configure_torch_threads(args.threads)
    use_plan_cache(args, out)  # before any task is made: tasks read it when constructed
    env = make_env(args.env_id, env_kwargs(args))
    check_splits(args, env)
    check_units(args, out)
    if args.only_unit:  # a worker of --jobs or --ray-address
        out.mkdir(parents=True, exist_ok=True)
        run_unit(args, out, env, Path(args.klst or ""), args.only_unit)
        return 0
    with contextlib.ExitStack() as stack:
        if args.ray_address:  # one Ray session for every stage, opened before any work
            stack.enter_context(connect_ray(args.ray_address))
        out.mkdir(parents=True, exist_ok=True)
        klst = klst_router(args, out, env)
        calibrate_curve_top(args, out, env, klst)
        check_router(args, out, klst)  # built or calibrated just now, or named by --klst
        print(f"KL-ST router: {klst}", flush=True)
        run_stages(args, argv, out, env, klst)
    by_lambda = analyse(args, out)
    frontier_plot(args, by_lambda, out / "frontiers.png")
    curves = learning_curves(args, out, out / "learning_curves.png")
    extra = {
        "command": "python benchmarks/ppo_vs_grpo.py " + shlex.join(argv),
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "tiers": ", ".join(env.unwrapped.tier_names),
        "klst_checkpoint": str(klst),
        "curves": curves,
        "wall_time_s": time.perf_counter() - t0,
        "unit_time_s": unit_times(out, units(args)),
        "reused_rows": reused_rows(out, units(args)),
    }
    text = write_report(args, out, by_lambda, extra)
    print(text)
    if args.results_md:
        update_results_md(Path(args.results_md), text)
        print(f"updated {args.results_md}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
