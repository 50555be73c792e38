"""Bootstrap confidence intervals over tasks and the headroom table (training.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from precision_gym.error import ConfigError
from training.stats import (
    CI,
    bootstrap_ci,
    clustered_auc_diff,
    curve_at,
    curve_at_runs,
    headroom,
    paired_bootstrap_diff,
    per_task,
    rank_auc,
    simultaneous_level,
)


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    x = np.random.default_rng(0).normal(1.0, 1.0, 400)
    ci = bootstrap_ci(x, seed=3)
    assert ci.lo < x.mean() < ci.hi and ci.value == pytest.approx(x.mean())
    # ~ mean +- 1.96 sigma / sqrt(n) for a normal sample
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert (ci.hi - ci.lo) / 2 == pytest.approx(half, rel=0.1)
    assert bootstrap_ci(x, seed=3) == ci
    assert bootstrap_ci([0.7]) == CI(0.7, 0.7, 0.7, 0.95)


def test_paired_difference_uses_the_pairing():
    rng = np.random.default_rng(1)
    task_difficulty = rng.normal(0, 5, 200)  # large between-task spread, shared by both
    a, b = task_difficulty + 0.1, task_difficulty
    paired = paired_bootstrap_diff(a, b)
    assert paired.excludes_zero and paired.value == pytest.approx(0.1)
    unpaired = bootstrap_ci(a).hi - bootstrap_ci(a).lo
    assert paired.hi - paired.lo < unpaired / 100
    assert not paired_bootstrap_diff(b, b).excludes_zero


def test_errors_name_expected_and_actual():
    with pytest.raises(ConfigError, match="expected equal lengths, got 3 and 2"):
        paired_bootstrap_diff([1, 2, 3], [1, 2])
    with pytest.raises(ConfigError, match="needs at least one value"):
        bootstrap_ci([])
    with pytest.raises(ConfigError, match="expects finite values, got 1 non-finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ConfigError, match=r"level must be in \(0, 1\), got 1.5"):
        bootstrap_ci([1.0], level=1.5)


def test_per_task_averages_over_seeds():
    recs = [
        {"task_index": 3, "seed": 0, "episode_return": 1.0},
        {"task_index": 1, "seed": 0, "episode_return": 0.0},
        {"task_index": 3, "seed": 1, "episode_return": 0.0},
        {"task_index": 1, "seed": 1, "episode_return": 0.5},
    ]
    tasks, values = per_task(recs, "episode_return")
    assert tasks == [1, 3] and values.tolist() == [0.25, 0.5]


def test_headroom_gap_between_start_and_ceiling():
    start = np.array([0.9, 0.8, 1.0, 0.95] * 10)
    table = headroom(
        {"always-high": start - 0.05, "klst": start, "oracle": start + 0.01}, start="klst"
    )
    assert table["gap"]["value"] == pytest.approx(0.01)
    assert table["routers"]["oracle"]["value"] == pytest.approx(start.mean() + 0.01)
    with pytest.raises(ConfigError, match=r"needs the 'oracle' router's utilities; got \['klst'\]"):
        headroom({"klst": start}, start="klst")


def test_episode_utility_and_summary_read_records_and_their_dicts():
    from dataclasses import asdict

    from training.evaluation import EpisodeRecord, episode_utility, utility_summary

    def rec(won, t, dec, high):
        return EpisodeRecord(seed=0, task_index=0, task_id="t", task_type="x", won=won, score=0.0,
                             episode_time_s=t, steps=dec, decisions=dec, high_decisions=high,
                             episode_return=0.0)  # fmt: skip

    recs = [rec(True, 2.0, 4, 1), rec(False, 6.0, 6, 4)]
    assert episode_utility(recs[0], 0.5) == pytest.approx(1.0 - 0.5 * 2.0)
    assert episode_utility(asdict(recs[1]), 0.5) == pytest.approx(-3.0)
    want = {"success": 0.5, "hp_fraction": 0.5, "utility": -1.5}
    assert utility_summary(recs, 0.5) == pytest.approx(want)
    assert utility_summary([asdict(r) for r in recs], 0.5) == pytest.approx(want)


def test_curve_at_interpolates_task_by_task_between_the_bracketing_points():
    lo, mid, hi = np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([3.0, 0.0])
    points = [(0.9, hi), (0.2, lo), (0.5, mid)]  # any order
    values, inside = curve_at(points, 0.6)  # a third of the way from 0.5 to 0.9
    assert inside and values == pytest.approx([1 + 2 / 4, 1 - 1 / 4])
    assert curve_at(points, 0.5)[0] == pytest.approx(mid)
    values, inside = curve_at(points, 0.95)  # outside: the nearest end, flagged
    assert not inside and values == pytest.approx(hi)
    assert curve_at(points, 0.2) == (pytest.approx(lo), True)
    with pytest.raises(ConfigError, match="curve_at needs at least one measured point"):
        curve_at([], 0.5)
    with pytest.raises(ConfigError, match=r"expected equal lengths, got \[1, 2\]"):
        curve_at([(0.1, [1.0]), (0.2, [1.0, 2.0])], 0.15)


def test_curve_at_runs_reads_each_run_at_its_own_point_then_averages():
    # run 0 shipped its start: it sits on the start's measured point and reads it exactly
    start0, other0 = np.array([-1.0, 2.0]), np.array([-3.0, 0.0])
    run0 = (0.16, [(0.12, other0), (0.16, start0)])
    # run 1's router moved to 0.13 on a curve measured on run 1's episodes
    lo1, hi1 = np.array([0.0, 0.0]), np.array([3.0, 3.0])
    run1 = (0.13, [(0.10, lo1), (0.16, hi1)])
    values, inside = curve_at_runs([run0])
    assert inside and np.array_equal(values, start0)  # exactly the point, no chord
    values, inside = curve_at_runs([run0, run1])
    assert inside and values == pytest.approx((start0 + np.array([1.5, 1.5])) / 2)
    # pooled first, the mixed HP (0.145) would read run 0's curve off its chord instead
    pooled, _ = curve_at([(0.12, other0), (0.16, start0)], 0.145)
    assert not np.allclose(pooled, start0)
    _, inside = curve_at_runs([run0, (0.2, run1[1])])  # run 1 beyond its curve's end
    assert not inside
    with pytest.raises(ConfigError, match="curve_at_runs needs at least one run, got none"):
        curve_at_runs([])
    with pytest.raises(ConfigError, match=r"same tasks in every run: .* got \[1, 2\]"):
        curve_at_runs([run0, (0.1, [(0.1, [1.0])])])


def test_simultaneous_level_is_bonferroni():
    assert simultaneous_level(1) == pytest.approx(0.95)
    assert simultaneous_level(15) == pytest.approx(1 - 0.05 / 15)
    assert simultaneous_level(4, level=0.9) == pytest.approx(0.975)
    with pytest.raises(ConfigError, match="a family of >= 1 comparisons, got 0"):
        simultaneous_level(0)
    with pytest.raises(ConfigError, match=r"a level in \(0, 1\), got 1.5"):
        simultaneous_level(2, level=1.5)


def test_rank_auc_is_the_chance_a_positive_outscores_a_negative_ties_half():
    assert rank_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert rank_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert rank_auc([1.0], [1.0]) == 0.5
    assert rank_auc([1.0, 3.0], [2.0]) == 0.5
    assert rank_auc([2.0, 2.0], [2.0, 1.0]) == pytest.approx(0.75)  # (0.5 + 1) per positive
    with pytest.raises(ConfigError, match="at least one positive and one negative score, got 2"):
        rank_auc([1.0, 2.0], [])


def test_clustered_auc_diff_resamples_tasks_and_is_exact_on_known_scorers():
    y = np.array([True, True, False])
    good, bad = np.array([0.9, 0.8, 0.1]), np.array([0.1, 0.2, 0.9])
    clusters = [(good + 0.01 * i, bad, y) for i in range(5)] + [(good, good, y)]
    ci = clustered_auc_diff(clusters, n_boot=300)
    b = np.concatenate([c[1] for c in clusters])
    ys = np.tile(y, 6)
    assert ci.value == pytest.approx(1.0 - rank_auc(b[ys], b[~ys]))  # a separates perfectly
    assert ci.lo <= ci.value <= ci.hi and ci.excludes_zero
    assert ci == clustered_auc_diff(clusters, n_boot=300)  # deterministic for a seed
    same = clustered_auc_diff([(good, good, y), (bad, bad, y)], n_boot=100)
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="cluster 0: expected equal lengths"):
        clustered_auc_diff([(good, bad[:2], y)])
    with pytest.raises(ConfigError, match="needs both classes"):
        clustered_auc_diff([(good, bad, np.ones(3, dtype=bool))])
