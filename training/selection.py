"""Keep-best selection: which evaluated router a refinement run ships.

GRPO and the SB3 baselines evaluate the router greedily on the same fixed episodes (tasks and
seeds of a held-out split) before training and every few updates. Each evaluation row holds the
per-episode returns in a fixed order, so two rows are paired episode by episode.

Rules (``keep_best_rule``):

- ``"paired"`` (default): a later router is eligible only when it beats the **start** router
  significantly on the selection episodes: the one-sided paired-bootstrap lower bound, at
  confidence ``level``, of its mean return gain over the start is above zero. The eligible
  router of highest mean utility is kept; with none, the start is kept. A handful of selection
  episodes then cannot hand a router that is worse than its start a lucky win (the failure the
  mean rule showed: a +0.33 gain on 16 selection episodes that became -0.31 on the test split).
- ``"mean"``: the router of highest mean utility, the start included (ties go to the earlier).
- ``"final"``: one candidate named before any evaluation, the router training ends with. It
  ships when its paired one-sided bound over the start (at ``level``) is above zero, else the
  start ships; the evaluations in between are logged (learning curves) but never chosen. With
  one candidate there is no winner's curse and no bound to correct for the number of routers
  tried, so every episode of the selection split can go to this one test (no confirmation
  needed): the most power the split allows.

Confirmation (:func:`confirm_plan`): the router a rule keeps was chosen, among several, on the
same selection episodes it was scored on, so its gain there is biased upward (the winner's
curse) and the chance that *some* router no better than the start passes grows with the number
evaluated. A trainer therefore tests the kept router once more against the start on fresh
episodes (``confirm_episodes``): one comparison, on episodes that played no part in the choice.

Per budget (:func:`budget_choices`): a refined router is deployed at several budgets K, each
through its own calibrated threshold, so the same rule decides at each K between the refined
and the start router, both calibrated at K and evaluated on the same episodes.

Pure functions of the rows; tested in ``tests/test_selection.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import numpy as np

from precision_gym.error import CheckpointError, ConfigError
from training.stats import CI, bootstrap_ci

__all__ = [
    "KEEP_BEST_RULES",
    "budget_choices",
    "confirm_plan",
    "confirmation",
    "confirmation_line",
    "eval_plan",
    "eval_row",
    "gain_over_start",
    "keep_best_fields",
    "select_best",
    "validate_keep_best",
    "validate_rule",
]

KEEP_BEST_RULES = ("paired", "mean", "final")
_BOOTSTRAP = 4_000


def validate_rule(rule: str, level: float) -> None:
    """Raise :class:`ConfigError` for an unknown rule or a level outside (0.5, 1)."""
    if rule not in KEEP_BEST_RULES:
        raise ConfigError(f"keep_best_rule must be one of {list(KEEP_BEST_RULES)}, got {rule!r}")
    if not 0.5 < level < 1.0:
        raise ConfigError(f"keep_best_level must be in (0.5, 1), got {level}")


def validate_keep_best(rule: str, level: float, confirm_episodes: int) -> None:
    """:func:`validate_rule`, and ``confirm_episodes`` >= 0: a config's keep-best options."""
    validate_rule(rule, level)
    if confirm_episodes < 0:
        raise ConfigError(f"confirm_episodes must be >= 0, got {confirm_episodes}")


def keep_best_fields(
    *, what: str, shipped: str, needs: str, otherwise: str
) -> tuple[Any, Any, Any, Any, Any]:
    """The dataclass fields ``eval_episodes``, ``keep_best``, ``keep_best_rule``,
    ``keep_best_level`` and ``confirm_episodes`` of a trainer's config (GRPO's, the SB3 baselines'), with one set of
    defaults and help texts; ``what`` names the trained thing ("router", "model"),
    ``shipped`` what the run ships, ``needs`` the evaluation option keep-best needs and
    ``otherwise`` what ships when confirmation fails (and what 0 means).

    Use: ``eval_episodes, keep_best, ..., confirm_episodes = keep_best_fields(...)`` after the
    five annotations in the class body (``int``, ``bool``, ``str``, ``float``, ``int``)."""
    return (
        field(
            default=32,
            metadata={
                "help": "episodes per evaluation: tasks spread over the split, or every task "
                "under seeds seed, seed + 1, ... when the split has fewer tasks"
            },
        ),
        field(
            default=True,
            metadata={
                "help": f"{shipped} is the evaluated {what} chosen by keep_best_rule, the start "
                f"{what} included (needs {needs} > 0)"
            },
        ),
        field(
            default="paired",
            metadata={
                "help": f"'paired': keep a later {what} only when it beats the start on the "
                "evaluation episodes with a paired one-sided bootstrap bound above 0 at "
                "keep_best_level (else the start); 'mean': the highest mean utility; 'final': "
                f"only the last {what} is a candidate, shipped when it beats the start by that "
                "bound (one test: no winner's curse, so confirm_episodes can be 0)"
            },
        ),
        field(
            default=0.9,
            metadata={"help": "one-sided confidence of the paired keep-best rule, in (0.5, 1)"},
        ),
        field(
            default=32,
            metadata={
                "help": f"after training, a kept later {what} must beat the start again by "
                "keep_best_rule on this many fresh episodes of the evaluation split (tasks, or "
                f"seeds, the keep-best evaluations did not use), else {otherwise}"
            },
        ),
    )


def eval_plan(n_tasks: int, episodes: int, seed: int) -> tuple[list[int], tuple[int, ...]]:
    """Tasks and seeds of the keep-best evaluations: ``episodes`` tasks spread over a split of
    ``n_tasks``, with one seed (``seed``) while the split is large enough; a smaller split
    (WebShop's 19 ``eval`` tasks) runs every task under ``seed, seed + 1, ...`` until at least
    ``episodes`` episodes, so the paired rule is not starved of episodes."""
    from training.evaluation import select_tasks

    if episodes < 1 or n_tasks < 1:
        raise ConfigError(
            f"eval_plan needs episodes >= 1 and a split with tasks, got {episodes}, {n_tasks}"
        )
    tasks = select_tasks(n_tasks, episodes)
    n_seeds = -(-episodes // len(tasks))
    return tasks, tuple(range(seed, seed + n_seeds))


def confirm_plan(
    n_tasks: int, episodes: int, seed: int, used: tuple[list[int], tuple[int, ...]]
) -> tuple[list[int], tuple[int, ...]]:
    """Fresh episodes for the confirmation test: ``episodes`` tasks spread over the tasks of
    the split that the keep-best plan ``used`` (its ``(tasks, seeds)``) left out, under
    ``seed``; when fewer than ``episodes`` tasks are left (WebShop's 19-task ``eval`` split),
    every task of the split under seeds the keep-best plan did not use, from
    ``max(used seeds) + 1`` on, until at least ``episodes`` episodes."""
    from training.evaluation import select_tasks

    if episodes < 1 or n_tasks < 1:
        raise ConfigError(
            f"confirm_plan needs episodes >= 1 and a split with tasks, got {episodes}, {n_tasks}"
        )
    used_tasks, used_seeds = used
    left = sorted(set(range(n_tasks)) - set(used_tasks))
    if len(left) >= episodes:
        return [left[i] for i in select_tasks(len(left), episodes)], (seed,)
    first = max(used_seeds, default=seed - 1) + 1
    return list(range(n_tasks)), tuple(range(first, first + -(-episodes // n_tasks)))


def confirmation(
    start: Mapping[str, Any],
    refined: Mapping[str, Any],
    *,
    rule: str = "paired",
    level: float = 0.9,
) -> dict[str, Any]:
    """The confirmation test of a kept router: ``rule`` once more on its row and the start's
    from the fresh episodes; ``router`` is ``"refined"`` or ``"start"``, with the paired gain
    over the start (its ``lo`` is the rule's one-sided bound) and both rows."""
    keep = select_best([start, refined], rule=rule, level=level)
    gain = gain_over_start(refined, start, level=level)
    return {
        "rule": rule,
        "level": level,
        "router": "refined" if keep == 1 else "start",
        "gain": {"value": gain.value, "lo": gain.lo, "hi": gain.hi, "level": gain.level},
        "rows": {"start": dict(start), "refined": dict(refined)},
    }


def confirmation_line(record: Mapping[str, Any], kept: str) -> str:
    """One printed line for a :func:`confirmation` record (with its ``split``) of the router
    ``kept`` names (``"update 5"``, ``"step 2000"``)."""
    g = record["gain"]
    verdict = "confirmed" if record["router"] == "refined" else "not confirmed: ships the start"
    return (
        f"confirmation on {len(record['rows']['start']['returns'])} fresh {record['split']} "
        f"episodes: {kept} - start = {g['value']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}] "
        f"({verdict})"
    )


def eval_row(records: Sequence[Any], split: str) -> dict[str, Any]:
    """One keep-best evaluation row from evaluation records: utility (mean Eq. 8 return),
    success, HP fraction and the per-episode returns in (task, seed) order, for pairing."""
    recs = sorted(records, key=lambda r: (r.task_index, r.seed))
    decisions = sum(r.decisions for r in recs)
    returns = [float(r.episode_return) for r in recs]
    return {
        "split": split,
        "episodes": len(recs),
        "utility": float(np.mean(returns)),
        "success_rate": float(np.mean([r.won for r in recs])),
        "hp_fraction": sum(r.high_decisions for r in recs) / decisions if decisions else 0.0,
        "returns": returns,
    }


def _returns(row: Mapping[str, Any], which: str) -> np.ndarray:
    if "returns" not in row:
        raise CheckpointError(
            f"{which} evaluation row has no per-episode 'returns' (written by an older "
            "version): the paired keep-best rule needs them; use keep_best_rule='mean' or "
            "start the run afresh"
        )
    return np.asarray(row["returns"], dtype=np.float64)


def gain_over_start(
    row: Mapping[str, Any], start: Mapping[str, Any], *, level: float, seed: int = 0
) -> CI:
    """Paired bootstrap CI of ``mean(row.returns - start.returns)``; its ``lo`` is the
    one-sided lower bound at confidence ``level`` (a two-sided ``2 * level - 1`` interval)."""
    a, b = _returns(row, "a later"), _returns(start, "the start router's")
    if a.shape != b.shape:
        raise CheckpointError(
            "keep-best rows are paired episode by episode: expected "
            f"{len(b)} returns like the start row, got {len(a)}"
        )
    return bootstrap_ci(a - b, level=2.0 * level - 1.0, n_boot=_BOOTSTRAP, seed=seed)


def select_best(
    rows: Sequence[Mapping[str, Any]], *, rule: str = "paired", level: float = 0.9
) -> int:
    """Index of the row whose router is kept; ``rows[0]`` is the start router's evaluation.

    Under ``"paired"`` and ``"mean"`` adding a row never moves the choice to an older row, so
    a trainer saves its best router exactly when the newest row is chosen. Under ``"final"``
    the choice is the newest row or the start: a trainer whose newest row is not chosen puts
    the start back as its best router.
    """
    validate_rule(rule, level)
    if not rows:
        raise ConfigError("select_best needs at least the start router's evaluation, got none")
    if rule == "final":
        last = len(rows) - 1
        return last if last and gain_over_start(rows[last], rows[0], level=level).lo > 0 else 0
    best = 0
    for i in range(1, len(rows)):
        if rows[i]["utility"] <= rows[best]["utility"]:
            continue
        if rule == "paired" and gain_over_start(rows[i], rows[0], level=level).lo <= 0.0:
            continue
        best = i
    return best


def budget_choices(
    start: Mapping[float, Mapping[str, Any]],
    refined: Mapping[float, Mapping[str, Any]],
    *,
    rule: str = "paired",
    level: float = 0.9,
) -> dict[float, dict[str, Any]]:
    """At each budget K, ``"refined"`` where ``rule`` keeps the refined router's row over the
    start router's (:func:`select_best` on the pair), else ``"start"``; with the paired gain
    over the start (its ``lo`` is the rule's one-sided bound) and both rows' utility and HP."""
    validate_rule(rule, level)
    if set(start) != set(refined):
        raise ConfigError(
            "budget_choices compares the routers at the same budgets: expected refined rows at "
            f"{sorted(start)}, got {sorted(refined)}"
        )
    out: dict[float, dict[str, Any]] = {}
    for k in sorted(start):
        s, r = start[k], refined[k]
        gain = gain_over_start(r, s, level=level)
        out[k] = {
            "router": "refined" if select_best([s, r], rule=rule, level=level) == 1 else "start",
            "gain": {"value": gain.value, "lo": gain.lo, "hi": gain.hi, "level": gain.level},
            "start_utility": float(s["utility"]),
            "refined_utility": float(r["utility"]),
            "start_hp": float(s["hp_fraction"]),
            "refined_hp": float(r["hp_fraction"]),
        }
    return out
