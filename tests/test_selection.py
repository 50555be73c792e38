"""Keep-best selection rules (training.selection): pure functions on evaluation rows."""

from __future__ import annotations

import numpy as np
import pytest

from precision_gym.error import CheckpointError, ConfigError
from training.evaluation import EpisodeRecord
from training.selection import (
    budget_choices,
    confirm_plan,
    confirmation,
    confirmation_line,
    eval_plan,
    eval_row,
    gain_over_start,
    keep_best_fields,
    select_best,
    validate_keep_best,
)


def _row(returns):
    return {"utility": float(np.mean(returns)), "returns": list(map(float, returns))}


START = _row([1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.0])


def test_mean_rule_takes_the_highest_utility_and_ties_go_to_the_earlier():
    rows = [
        START,
        _row([x + 0.1 for x in START["returns"]]),
        _row([x + 0.1 for x in START["returns"]]),
    ]
    assert select_best(rows, rule="mean") == 1
    assert select_best([START, _row(START["returns"])], rule="mean") == 0


def test_paired_rule_refuses_a_gain_from_one_lucky_episode():
    """One episode flips to a big win while most get worse: the mean rises, the paired lower
    bound does not clear zero, so the start is kept (the mean rule would take it)."""
    lucky = [x - 0.1 for x in START["returns"]]
    lucky[1] += 2.0
    rows = [START, _row(lucky)]
    assert rows[1]["utility"] > START["utility"]
    assert gain_over_start(rows[1], START, level=0.9).lo <= 0.0
    assert select_best(rows, rule="paired") == 0
    assert select_best(rows, rule="mean") == 1


def test_paired_rule_keeps_a_consistent_gain_and_the_best_eligible_row():
    small = _row([x + 0.05 for x in START["returns"]])
    big = _row([x + 0.2 for x in START["returns"]])
    noisy_higher = _row([x + (4.5 if i == 0 else -0.3) for i, x in enumerate(START["returns"])])
    assert select_best([START, small], rule="paired") == 1
    assert select_best([START, small, big], rule="paired") == 2
    assert select_best([START, big, small], rule="paired") == 1
    # a higher mean that is not significant does not displace an eligible row
    assert noisy_higher["utility"] > big["utility"]
    assert select_best([START, big, noisy_higher], rule="paired") == 1


@pytest.mark.parametrize("rule", ["paired", "mean"])
def test_adding_a_row_never_moves_the_choice_back(rule):
    """Trainers save the best router when the newest row is chosen: that is only sound if
    the choice over a prefix is either the previous choice or the new row."""
    rng = np.random.default_rng(0)
    rows = [START] + [
        _row(np.asarray(START["returns"]) + rng.normal(0.05, 0.3, 8)) for _ in range(12)
    ]
    for k in range(1, len(rows)):
        before, after = select_best(rows[:k], rule=rule), select_best(rows[: k + 1], rule=rule)
        assert after in (before, k)


def test_final_rule_has_one_candidate_the_last_router():
    """'final': the routers evaluated in between are never chosen, however good; the last one
    ships only when its paired bound clears zero, else the choice goes back to the start."""
    big = _row([x + 0.2 for x in START["returns"]])
    small = _row([x + 0.05 for x in START["returns"]])
    worse = _row([x - 0.1 for x in START["returns"]])
    assert select_best([START], rule="final") == 0
    assert select_best([START, big, small], rule="final") == 2  # not the higher middle row
    assert select_best([START, big], rule="final") == 1
    assert select_best([START, big, worse], rule="final") == 0  # the start is back
    lucky = [x - 0.1 for x in START["returns"]]
    lucky[1] += 2.0  # a higher mean from one episode: the bound does not clear zero
    assert select_best([START, _row(lucky)], rule="final") == 0
    at_k = budget_choices({0.4: {**START, "hp_fraction": 0.4}}, {0.4: {**big, "hp_fraction": 0.4}},
                          rule="final")  # fmt: skip
    assert at_k[0.4]["router"] == "refined"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"rule": "median"},
            r"keep_best_rule must be one of \['paired', 'mean', 'final'\], got 'median'",
        ),
        ({"level": 0.5}, r"keep_best_level must be in \(0.5, 1\), got 0.5"),
        ({"level": 1.0}, r"keep_best_level must be in \(0.5, 1\), got 1.0"),
    ],
)
def test_bad_rule_or_level_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        select_best([START], **kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ("max", 0.9, 0),
            r"keep_best_rule must be one of \['paired', 'mean', 'final'\], got 'max'",
        ),
        (("paired", 1.0, 0), r"keep_best_level must be in \(0.5, 1\), got 1.0"),
        (("paired", 0.9, -3), "confirm_episodes must be >= 0, got -3"),
    ],
)
def test_validate_keep_best_names_the_option_and_the_value(args, match):
    with pytest.raises(ConfigError, match=match):
        validate_keep_best(*args)
    validate_keep_best("final", 0.95, 0)  # valid options pass


def test_grpo_and_sb3_configs_share_one_keep_best_definition():
    """Both trainers' keep-best options come from ``keep_best_fields``: same names, defaults
    and help, worded for what each ships; a fresh set of fields per call."""
    from dataclasses import fields

    from training.grpo import GRPOConfig
    from training.sb3_baselines import SB3Config

    names = ("eval_episodes", "keep_best", "keep_best_rule", "keep_best_level", "confirm_episodes")
    grpo = {f.name: f for f in fields(GRPOConfig) if f.name in names}
    sb3 = {f.name: f for f in fields(SB3Config) if f.name in names}
    assert set(grpo) == set(sb3) == set(names)
    for name in names:
        assert grpo[name].default == sb3[name].default
    assert (GRPOConfig().keep_best, GRPOConfig().keep_best_rule) == (True, "paired")
    assert (SB3Config().keep_best_level, SB3Config().confirm_episodes) == (0.9, 32)
    assert "the final router is the evaluated router" in grpo["keep_best"].metadata["help"]
    assert "model.zip is the evaluated model" in sb3["keep_best"].metadata["help"]
    assert (
        grpo["keep_best_rule"].metadata["help"].replace("router", "model")
        == (sb3["keep_best_rule"].metadata["help"])
    )
    a = keep_best_fields(what="x", shipped="y", needs="z", otherwise="w")
    b = keep_best_fields(what="x", shipped="y", needs="z", otherwise="w")
    assert all(fa is not fb for fa, fb in zip(a, b, strict=True))
    with pytest.raises(ConfigError, match="confirm_episodes must be >= 0, got -1"):
        SB3Config(confirm_episodes=-1)


def test_rows_without_returns_or_with_other_episodes_are_refused():
    old = {"utility": START["utility"] + 1.0}  # an eval.jsonl row of an older version
    with pytest.raises(
        CheckpointError, match=r"a later evaluation row has no per-episode 'returns'"
    ):
        select_best([START, old])
    assert select_best([START, old], rule="mean") == 1
    with pytest.raises(CheckpointError, match=r"expected 8 returns like the start row, got 2"):
        select_best([START, _row([5.0, 5.0])])
    with pytest.raises(ConfigError, match=r"needs at least the start router's evaluation"):
        select_best([])


def test_eval_row_orders_returns_by_task_then_seed():
    def rec(task, seed, ret, won, dec, high):
        return EpisodeRecord(
            seed=seed, task_index=task, task_id=f"t{task}", task_type="x", won=won, score=1.0,
            episode_time_s=1.0, steps=dec, decisions=dec, high_decisions=high,
            episode_return=ret,
        )  # fmt: skip

    recs = [rec(3, 0, 0.5, True, 4, 1), rec(1, 1, -0.2, False, 6, 3), rec(1, 0, 0.9, True, 2, 0)]
    row = eval_row(recs, "valid_train")
    assert row["returns"] == [0.9, -0.2, 0.5]
    assert row["episodes"] == 3 and row["split"] == "valid_train"
    assert row["utility"] == pytest.approx(0.4)
    assert row["success_rate"] == pytest.approx(2 / 3)
    assert row["hp_fraction"] == pytest.approx(4 / 12)


def test_eval_plan_spreads_tasks_then_adds_seeds_on_a_small_split():
    tasks, seeds = eval_plan(200, 32, seed=4)
    assert len(tasks) == 32 and tasks[0] == 0 and tasks[-1] == 199 and seeds == (4,)
    assert eval_plan(19, 32, seed=1) == (list(range(19)), (1, 2))  # 38 episodes >= 32
    assert eval_plan(19, 19, seed=0) == (list(range(19)), (0,))
    assert eval_plan(5, 11, seed=0) == (list(range(5)), (0, 1, 2))
    with pytest.raises(ConfigError, match=r"eval_plan needs episodes >= 1 and a split"):
        eval_plan(0, 4, seed=0)


def _hp_row(returns, hp):
    return _row(returns) | {"hp_fraction": hp}


def test_budget_choices_keep_the_refined_router_only_where_it_clearly_wins():
    """Per K: a clear paired win ships the refined router; a loss, or a gain from one lucky
    episode, ships the start; the gain's lower bound is the rule's bound."""
    better = [x + 0.2 for x in START["returns"]]
    lucky = [x - 0.1 for x in START["returns"]]
    lucky[1] += 2.0
    worse = [x - 0.3 for x in START["returns"]]
    start = {k: _hp_row(START["returns"], 0.5) for k in (0.2, 0.4, 0.7)}
    refined = {0.2: _hp_row(worse, 0.3), 0.4: _hp_row(lucky, 0.5), 0.7: _hp_row(better, 0.8)}
    paired = budget_choices(start, refined, rule="paired", level=0.9)
    assert [paired[k]["router"] for k in (0.2, 0.4, 0.7)] == ["start", "start", "refined"]
    assert paired[0.7]["gain"]["value"] == pytest.approx(0.2)
    assert paired[0.7]["gain"]["lo"] > 0 >= paired[0.4]["gain"]["lo"]
    assert (paired[0.2]["start_hp"], paired[0.2]["refined_hp"]) == (0.5, 0.3)
    mean = budget_choices(start, refined, rule="mean", level=0.9)
    assert [mean[k]["router"] for k in (0.2, 0.4, 0.7)] == ["start", "refined", "refined"]


def test_budget_choices_need_the_same_budgets_and_a_known_rule():
    start = {0.2: _hp_row([1.0, 0.0], 0.2)}
    with pytest.raises(ConfigError, match=r"expected refined rows at \[0.2\], got \[0.4\]"):
        budget_choices(start, {0.4: _hp_row([1.0, 0.0], 0.4)})
    with pytest.raises(ConfigError, match="keep_best_rule must be one of"):
        budget_choices(start, start, rule="best")


def test_confirm_plan_uses_fresh_tasks_or_fresh_seeds():
    """Tasks the keep-best plan left out, spread over them; a split too small for that plays
    every task under the seeds after the keep-best ones."""
    used = eval_plan(200, 32, 1)
    tasks, seeds = confirm_plan(200, 32, 1, used)
    assert len(tasks) == 32 and not set(tasks) & set(used[0]) and seeds == (1,)
    assert tasks == sorted(tasks) and (tasks[0], tasks[-1]) == (1, 198)
    small = eval_plan(19, 32, 0)  # every task under seeds 0 and 1
    assert small == (list(range(19)), (0, 1))
    assert confirm_plan(19, 32, 0, small) == (list(range(19)), (2, 3))
    assert confirm_plan(19, 4, 0, eval_plan(19, 4, 0))[1] == (0,)
    with pytest.raises(ConfigError, match="confirm_plan needs episodes >= 1"):
        confirm_plan(19, 0, 0, small)


def test_confirmation_decides_once_more_on_the_fresh_rows():
    """The kept router's fresh row against the start's: the rule's choice, the paired gain."""
    better = _row([1.0, 0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5])  # never worse, +0.5 on 5 of 8
    worse = _row([0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.0])
    ok = confirmation(START, better, rule="paired", level=0.9)
    assert ok["router"] == "refined" and ok["gain"]["lo"] > 0
    assert ok["gain"]["value"] == pytest.approx(better["utility"] - START["utility"])
    assert ok["rows"] == {"start": START, "refined": better} and ok["rule"] == "paired"
    assert confirmation(START, worse, rule="paired", level=0.9)["router"] == "start"
    assert confirmation(START, START, rule="mean", level=0.9)["router"] == "start"  # a tie
    line = confirmation_line({**ok, "split": "valid_train"}, "update 5")
    assert line.startswith(
        "confirmation on 8 fresh valid_train episodes: update 5 - start = +0.312"
    )
    assert line.endswith("(confirmed)")
