"""GRPO: advantages and loss on known numbers, config validation, a tiny end-to-end run."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from precision_gym.error import CheckpointError, ConfigError
from training.grpo import (
    GRPOConfig,
    GRPOTrainer,
    group_advantages,
    grpo_loss,
    hold_bias,
    train_grpo,
)

# ----------------------------------------------------------------------------- advantages


def test_group_advantages_known_values():
    adv = group_advantages([1.0, 0.0, 0.0, 1.0, 2.0, 4.0], group_size=2, eps=0.0)
    # groups (1, 0), (0, 1), (2, 4): population std 0.5, 0.5, 1.0
    np.testing.assert_allclose(adv, [1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    adv = group_advantages([0.9, 0.5, -0.1, 0.5], group_size=4, eps=1e-6)
    r = np.array([0.9, 0.5, -0.1, 0.5])
    np.testing.assert_allclose(adv, (r - r.mean()) / (r.std() + 1e-6))
    assert adv.sum() == pytest.approx(0.0, abs=1e-9)


def test_group_advantages_zero_for_equal_returns():
    adv = group_advantages([0.7, 0.7, 0.7, 1.0, 0.0, 0.2], group_size=3)
    np.testing.assert_array_equal(adv[:3], 0.0)
    assert np.all(adv[3:] != 0.0)


def test_group_advantages_checks_layout():
    with pytest.raises(ConfigError, match="multiple of group_size=4, got 6"):
        group_advantages(np.zeros(6), group_size=4)
    with pytest.raises(ConfigError, match="group_size must be >= 2, got 1"):
        group_advantages(np.zeros(6), group_size=1)


# ----------------------------------------------------------------------------- loss


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_grpo_loss_clips_on_known_numbers():
    old = _t(0.0, 0.0, 0.0, 0.0)
    new = torch.log(_t(1.5, 1.5, 0.5, 1.1))  # ratios 1.5, 1.5, 0.5, 1.1
    adv = _t(1.0, -1.0, -1.0, 2.0)
    loss, stats = grpo_loss(new, old, adv, clip_eps=0.2)
    # min(r A, clip(r) A): 1.2 (clipped), -1.5 (unclipped), -0.8 (clipped), 2.2
    assert float(loss) == pytest.approx(-(1.2 - 1.5 - 0.8 + 2.2) / 4)
    assert stats["clip_fraction"] == pytest.approx(0.75)
    assert stats["kl_ref"] == 0.0


def test_grpo_loss_gradient_is_zero_where_clipped():
    new = torch.log(_t(1.5, 0.9)).requires_grad_(True)
    loss, _ = grpo_loss(new, _t(0.0, 0.0), _t(1.0, 1.0), clip_eps=0.2)
    loss.backward()
    assert new.grad[0] == 0.0  # ratio 1.5 > 1.2 with A > 0: clipped, no gradient
    assert new.grad[1] == pytest.approx(-0.9 / 2)  # d/dlogp of -(r A)/2 = -r/2


def test_grpo_loss_kl_term():
    new, ref = torch.log(_t(0.5, 0.25)), torch.log(_t(0.25, 0.5))
    zero = _t(0.0, 0.0)
    loss0, _ = grpo_loss(new, new.clone(), zero, 0.2, ref_logp=ref, kl_coef=0.0)
    loss, stats = grpo_loss(new, new.clone(), zero, 0.2, ref_logp=ref, kl_coef=0.1)
    # k3: exp(d) - d - 1 with d = ref - new = log(0.5), log(2)
    k3 = [(0.5 - math.log(0.5) - 1), (2 - math.log(2) - 1)]
    assert stats["kl_ref"] == pytest.approx(np.mean(k3))
    assert float(loss) == pytest.approx(float(loss0) + 0.1 * np.mean(k3))
    same, st = grpo_loss(new, new.clone(), zero, 0.2, ref_logp=new.clone(), kl_coef=1.0)
    assert st["kl_ref"] == pytest.approx(0.0) and float(same) == pytest.approx(0.0)


def test_grpo_loss_checks_shapes_and_eps():
    with pytest.raises(ValueError, match="same shape"):
        grpo_loss(_t(0.0), _t(0.0, 0.0), _t(0.0), 0.2)
    with pytest.raises(ConfigError, match=r"clip_eps must be in \(0, 1\), got 1.5"):
        grpo_loss(_t(0.0), _t(0.0), _t(0.0), 1.5)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group_size": 1}, r"group_size must be >= 2 .*got 1"),
        (
            {"tasks_per_batch": 3, "group_size": 4, "batch_size": 10},
            r"batch_size must split into groups: expected .* = 12, got 10",
        ),
        ({"cost_weight": -0.1}, r"cost_weight \(lambda\) must be >= 0, got -0.1"),
        ({"lr": 0.0}, r"lr must be > 0, got 0.0"),
        ({"clip_eps": 1.0}, r"clip_eps must be in \(0, 1\), got 1.0"),
        ({"kl_coef": -1.0}, r"kl_coef must be >= 0, got -1.0"),
        ({"vector_env": "threads"}, r"vector_env must be 'sync' or 'async', got 'threads'"),
        ({"budgets": (0.4, 1.2)}, r"budgets must lie in \(0, 1\), got \[0.4, 1.2\]"),
        ({"env_kwargs": {"cost_weight": 0.1}}, r"set lambda with cost_weight"),
        ({"calibration_refine_iters": -1}, r"calibration_refine_iters must be >= 0, got .*-1"),
    ],
)
def test_config_validation_messages(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GRPOConfig(**kwargs)


def test_config_derives_batch_size_and_has_help_per_field():
    from dataclasses import fields

    assert GRPOConfig(tasks_per_batch=3, group_size=5).batch_size == 15
    missing = [f.name for f in fields(GRPOConfig) if not f.metadata.get("help")]
    assert not missing


# ----------------------------------------------------------------------------- end to end


def _cfg(out, **kw):
    base = dict(
        env_id="DMR-WebShop-v0",
        split="train",
        pool_size=4,
        tasks_per_batch=1,
        group_size=2,
        max_updates=2,
        lr=1e-3,
        d_model=16,
        n_layers=1,
        n_heads=2,
        calibration_episodes=0,
        tensorboard=False,
        progress=False,
        out=str(out),
    )
    return GRPOConfig(**{**base, **kw})


def _curve(path):
    return [
        (r["env_steps"], r["mean_return"], r.get("loss"))
        for r in map(json.loads, path.read_text().splitlines())
    ]


def test_end_to_end_deterministic_and_resumable(tmp_path):
    """Same seed -> same curve; a run resumed after update 1 ends where a full run ends."""
    full = train_grpo(
        _cfg(tmp_path / "a", tensorboard=True, calibration_episodes=2, budgets=(0.5,))
    )
    assert full["updates"] == 2 and full["env_steps"] > 0
    assert set(full["thresholds"]) == {"0.5"}
    assert (tmp_path / "a" / "checkpoint.pt").exists()
    assert any((tmp_path / "a" / "tb").iterdir())
    rows = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert {"mean_return", "success_rate", "hp_fraction", "clip_fraction"} <= set(rows[0])

    first = GRPOTrainer(_cfg(tmp_path / "b", max_updates=1))
    first.train()
    first.close()
    with pytest.raises(ConfigError, match="exists: pass --resume"):
        GRPOTrainer(_cfg(tmp_path / "b")).train()
    with pytest.raises(ConfigError, match="different configuration"):
        GRPOTrainer(_cfg(tmp_path / "b", lr=5e-4, resume=True)).train()
    resumed = GRPOTrainer(_cfg(tmp_path / "b", resume=True))
    resumed.train()
    resumed.close()
    assert _curve(tmp_path / "b" / "log.jsonl") == _curve(tmp_path / "a" / "log.jsonl")

    # the final router evaluates through the CLI's loader with its calibrated budget
    from agents.router import load_router_policy

    policy = load_router_policy(tmp_path / "a" / "router.pt", budget=0.5)
    assert policy.metadata["trained_with"] == "GRPO" and policy.name == "grpo-router(K=0.5)"


def test_calibration_seed_chooses_the_calibration_episodes(tmp_path):
    """The benchmark calibrates GRPO with KL-ST's calibration seed, whatever the run's seed."""
    kw = dict(calibration_episodes=2, budgets=(0.5,), max_updates=1, seed=3)
    train_grpo(_cfg(tmp_path / "a", calibration_seed=0, **kw))
    train_grpo(_cfg(tmp_path / "b", **kw))
    seeds = [
        json.loads((tmp_path / r / "calibration" / "calibration.json").read_text())["seed"]
        for r in ("a", "b")
    ]
    assert seeds == [0, 3]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="expected a checkpoint at"):
        GRPOTrainer(_cfg(tmp_path, resume=True)).train()


def test_group_members_share_the_task_and_park(tmp_path):
    trainer = GRPOTrainer(_cfg(tmp_path, group_size=3))
    try:
        gen = torch.Generator().manual_seed(0)
        trajs = trainer.sample_group(1, [11, 12, 13], gen)
        assert len(trajs) == 3
        for t in trajs:
            assert t["info"] is not None and len(t["act"]) == int(t["info"]["decisions"])
        # parked sub-envs never ran a second episode: env steps == recorded decisions
        assert trainer.env_steps == sum(len(t["act"]) for t in trajs)
        task_ids = {e.unwrapped._episode["task_index"] for e in trainer.vec.envs}
        assert task_ids == {1}
    finally:
        trainer.close()


def test_sample_budget_bias_centres_the_policy_on_the_calibrated_threshold(tmp_path):
    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy
    from training.grpo import budget_bias as _budget_bias

    model = TransformerRouter(RouterConfig(embed_dim=4, max_len=4, d_model=8, n_layers=1))
    path = TransformerRouterPolicy(model, thresholds={"0.4": 0.2}).save(tmp_path / "r.pt")
    bias = _budget_bias(str(path), 0.4)
    assert bias == pytest.approx(math.log(0.8 / 0.2))
    # p(high) = tau_K becomes exactly 1/2 after the shift
    p = torch.softmax(torch.tensor([math.log(0.2) + bias, math.log(0.8)]), 0)
    assert float(p[0]) == pytest.approx(0.5)
    with pytest.raises(CheckpointError, match=r"budget K=0\.7 was not calibrated"):
        _budget_bias(str(path), 0.7)
    with pytest.raises(ConfigError, match=r"sample_budget must be in \(0, 1\) or None, got 1.5"):
        GRPOConfig(sample_budget=1.5)


# ----------------------------------------------------------------------------- options (issue 11)


def test_advantage_norms_on_known_numbers():
    from training.grpo import compute_advantages

    returns = [1.0, 0.98, 0.5, 0.5, 0.0, 1.0]  # all-success, flat, mixed
    group = compute_advantages(returns, 2, "group-std")
    assert np.allclose(group, [1, -1, 0, 0, -1, 1], atol=1e-3)  # 0.02 blown up to +-1
    none = compute_advantages(returns, 2, "none")
    assert np.allclose(none, [0.01, -0.01, 0, 0, -0.5, 0.5])  # the reward's own scale
    batch = compute_advantages(returns, 2, "batch-std")
    assert np.allclose(batch, none / none.std(), atol=1e-6)
    assert abs(batch[0] / batch[5]) == pytest.approx(0.02)  # cost vs success ratio kept
    with pytest.raises(ConfigError, match=r"advantage norm must be one of .*got 'std'"):
        compute_advantages(returns, 2, "std")


def test_lr_schedules():
    from training.grpo import lr_at

    assert lr_at(7, 10, 1e-3, "constant", 0.1) == 1e-3
    assert lr_at(1, 11, 1.0, "linear", 0.1) == pytest.approx(1.0)
    assert lr_at(6, 11, 1.0, "linear", 0.1) == pytest.approx(0.55)
    assert lr_at(11, 11, 1.0, "linear", 0.1) == pytest.approx(0.1)
    assert lr_at(6, 11, 1.0, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_at(11, 11, 1.0, "cosine", 0.2) == pytest.approx(0.2)
    with pytest.raises(ConfigError, match=r"lr_schedule must be one of"):
        lr_at(1, 2, 1.0, "step", 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"advantage_norm": "std"},
            r"advantage_norm must be one of \['group-std', 'none', 'batch-std'\], got 'std'",
        ),
        ({"lr_schedule": "exp"}, r"lr_schedule must be one of"),
        ({"lr_final_ratio": 1.5}, r"lr_final_ratio must be in \[0, 1\], got 1.5"),
        ({"entropy_coef": -0.1}, r"entropy_coef must be >= 0, got -0.1"),
        ({"eval_every": -1}, r"eval_every must be >= 0 and eval_episodes >= 1, got -1 and 32"),
        (
            {"keep_best_rule": "max"},
            r"keep_best_rule must be one of \['paired', 'mean', 'final'\], got 'max'",
        ),
        ({"keep_best_level": 1.5}, r"keep_best_level must be in \(0.5, 1\), got 1.5"),
        ({"step_advantage_weight": -1.0}, r"step_advantage_weight must be >= 0, got -1.0"),
        ({"step_gamma": 0.0}, r"step_gamma must be in \(0, 1\], got 0.0"),
    ],
)
def test_new_options_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GRPOConfig(**kwargs)


@pytest.mark.parametrize("rule", ["paired", "mean"])
def test_keep_best_never_ships_a_worse_router(tmp_path, rule):
    """A destructive run (huge lr, cost-only advantages) returns the evaluated router its
    keep-best rule chooses, the start router included; the eval log resumes to the same rows."""
    from agents.router import TransformerRouterPolicy
    from training.selection import select_best

    kw = dict(
        lr=0.5, max_updates=3, eval_every=2, eval_episodes=4, advantage_norm="group-std",
        entropy_coef=0.01, lr_schedule="linear", keep_best_rule=rule, confirm_episodes=0,
    )  # fmt: skip
    summary = train_grpo(_cfg(tmp_path / "a", **kw))
    evals = summary["evaluations"]
    assert [e["update"] for e in evals] == [0, 2, 3]  # start, every 2, after the last
    assert all(len(e["returns"]) == e["episodes"] == 4 for e in evals)
    best = evals[select_best(evals, rule=rule)]
    assert summary["selected_update"] == best["update"]
    assert best["utility"] >= evals[0]["utility"]
    if rule == "mean":
        assert best["utility"] == max(e["utility"] for e in evals)
    final = TransformerRouterPolicy.load(tmp_path / "a" / "router.pt")
    chosen = TransformerRouterPolicy.load(tmp_path / "a" / "best_router.pt")
    for k, v in final.model.state_dict().items():
        assert torch.equal(v, chosen.model.state_dict()[k])
    assert final.metadata["grpo_selected"]["start_utility"] == evals[0]["utility"]
    rows = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(r["lr"] <= 0.5 for r in rows) and rows[-1]["lr"] == pytest.approx(0.05)

    first = GRPOTrainer(_cfg(tmp_path / "b", **{**kw, "max_updates": 2}))
    first.train()
    first.close()
    resumed = train_grpo(_cfg(tmp_path / "b", **kw, resume=True))
    assert [e["utility"] for e in resumed["evaluations"]] == [e["utility"] for e in evals]
    assert resumed["selected_update"] == summary["selected_update"]


def test_final_rule_puts_the_start_back_when_the_last_router_fails(tmp_path, monkeypatch):
    """keep_best_rule='final': a middle router that beat the start is saved as best while it is
    the newest; when the last one then fails the bound, best_router.pt and router.pt are the
    start router again (scripted evaluation rows: +0.5 on every episode, then -0.1)."""
    from agents.router import TransformerRouterPolicy

    base = np.linspace(-1.0, 1.0, 8)
    offsets = iter([0.0, 0.5, -0.1])

    def scripted(self):
        returns = (base + next(offsets)).tolist()
        return {"update": self.update, "env_steps": self.env_steps, "high_bias": 0.0,
                "split": "eval", "episodes": 8, "utility": float(np.mean(returns)),
                "success_rate": 1.0, "hp_fraction": 0.5, "returns": returns}  # fmt: skip

    monkeypatch.setattr(GRPOTrainer, "evaluate_router", scripted)
    kw = dict(lr=0.05, max_updates=2, eval_every=1, keep_best_rule="final", confirm_episodes=0)
    probe = GRPOTrainer(_cfg(tmp_path / "probe", **kw))  # the same seed: the same start router
    start = copy.deepcopy(probe.model.state_dict())
    probe.close()
    summary = train_grpo(_cfg(tmp_path / "run", **kw))
    assert [e["update"] for e in summary["evaluations"]] == [0, 1, 2]
    assert [e["best_update"] for e in summary["evaluations"]] == [0, 1, 0]
    assert summary["selected_update"] == 0
    for name in ("best_router.pt", "router.pt"):
        shipped = TransformerRouterPolicy.load(tmp_path / "run" / name).model.state_dict()
        assert all(torch.equal(v, shipped[k]) for k, v in start.items()), name


def test_no_evaluation_keeps_the_last_router(tmp_path):
    summary = train_grpo(_cfg(tmp_path, eval_every=0))
    assert summary["evaluations"] == [] and summary["selected_update"] == 2
    assert not (tmp_path / "best_router.pt").exists()


def test_discounted_return_to_go():
    from training.grpo import discounted_to_go

    assert discounted_to_go([1.0, 2.0, 3.0], 0.5).tolist() == [2.75, 3.5, 3.0]
    assert discounted_to_go([], 0.9).tolist() == []


def test_step_advantages_compare_decisions_on_the_same_state():
    """GiGPO's step groups on known numbers: two members share state "s" at different steps
    (and one of them visits it twice); "u" is only seen once, so it gets 0."""
    from training.grpo import step_advantages

    keys = [["reset", "s", "s"], ["reset", "u"], ["x"], ["y"]]
    rewards = [[-0.1, -0.1, 1.0], [-0.2, -0.5], [0.0], [0.0]]
    adv = step_advantages(keys, rewards, group_size=2, gamma=1.0, norm="none")
    to_go = [[0.8, 0.9, 1.0], [-0.7, -0.5]]
    reset_mean = (0.8 - 0.7) / 2
    assert adv[0][0] == pytest.approx(0.8 - reset_mean)
    assert adv[1][0] == pytest.approx(-0.7 - reset_mean)
    s_mean = (0.9 + 1.0) / 2
    assert adv[0][1:].tolist() == pytest.approx([to_go[0][1] - s_mean, to_go[0][2] - s_mean])
    assert adv[1][1] == 0.0  # "u": nobody else was there
    # "x" and "y" are in the second group (another task): never pooled with the first
    assert adv[2].tolist() == [0.0] and adv[3].tolist() == [0.0]
    std = step_advantages(keys, rewards, group_size=2, gamma=1.0, norm="group-std")
    assert std[0][0] == pytest.approx(1.0, abs=1e-4) and std[1][0] == pytest.approx(-1.0, abs=1e-4)


def test_step_advantages_tell_cost_apart_on_a_lost_state():
    """A derailed state visited under both tiers: same success (none), so the step advantage
    prefers the cheaper call, whatever the episode advantage says."""
    from training.grpo import step_advantages

    keys = [["reset", "lost"], ["reset", "lost"]]
    rewards = [[-0.1, -0.3], [-0.1, -0.1]]  # member 0 paid for high precision on "lost"
    adv = step_advantages(keys, rewards, group_size=2, gamma=0.95, norm="none")
    assert adv[0][1] < 0.0 < adv[1][1]


def test_step_advantages_validate_their_input():
    from training.grpo import step_advantages

    with pytest.raises(ConfigError, match="trajectory 0: expected one anchor key per reward"):
        step_advantages([["a"], ["b"]], [[0.0, 1.0], [0.0]], group_size=2)
    with pytest.raises(ConfigError, match="keys and rewards must hold the same trajectories"):
        step_advantages([["a"]], [[0.0], [1.0]], group_size=2)
    with pytest.raises(ConfigError, match=r"step gamma must be in \(0, 1\], got 1.5"):
        step_advantages([["a"], ["b"]], [[0.0], [1.0]], group_size=2, gamma=1.5)
    with pytest.raises(ConfigError, match="multiple of group_size=2, got 3"):
        step_advantages([["a"]] * 3, [[0.0]] * 3, group_size=2)


def test_step_advantage_run_records_anchors_and_changes_the_update(tmp_path):
    """End to end: each decision has its anchor key and reward; with omega > 0 the update
    differs from the episode-only one, and the same seed repeats it exactly."""
    trainer = GRPOTrainer(_cfg(tmp_path / "t", group_size=3))
    try:
        trajs = trainer.sample_group(1, [11, 12, 13], torch.Generator().manual_seed(0))
        for t in trajs:
            assert len(t["key"]) == len(t["rew"]) == len(t["act"])
            assert t["key"][0] == "reset" and sum(t["rew"]) == pytest.approx(t["ret"])
    finally:
        trainer.close()
    kw = dict(group_size=3, max_updates=1, eval_every=0)
    train_grpo(_cfg(tmp_path / "a", **kw))
    train_grpo(_cfg(tmp_path / "b", step_advantage_weight=1.0, **kw))
    train_grpo(_cfg(tmp_path / "c", step_advantage_weight=1.0, **kw))
    a, b, c = (_curve(tmp_path / d / "log.jsonl") for d in "abc")
    assert b == c and [r[:2] for r in a] == [r[:2] for r in b]  # same episodes sampled
    assert a[0][2] != b[0][2]  # ... and another loss


def test_per_budget_selection_ships_start_or_refined_at_each_budget(tmp_path):
    """keep_best_per_budget: the start router is saved and calibrated like the refined one, the
    two are compared at each K on the keep-best episodes, and router_for_budget follows the
    choice that training.selection.budget_choices makes on those rows."""
    from agents.router import TransformerRouterPolicy
    from training.grpo import router_for_budget
    from training.selection import budget_choices

    model = _init_router(tmp_path / "init.pt").model
    kw = dict(
        init_checkpoint=str(tmp_path / "init.pt"), sample_budget=0.4, lr=0.5, max_updates=1,
        keep_best=False, eval_every=1, eval_episodes=4, calibration_episodes=2,
        budgets=(0.4, 0.7), confirm_episodes=4,
    )  # fmt: skip
    summary = train_grpo(_cfg(tmp_path / "a", **kw))
    out = tmp_path / "a"
    chosen = json.loads((out / "budget_selection.json").read_text())
    assert summary["budget_selection"] == chosen and chosen["episodes"] == 4
    start = TransformerRouterPolicy.load(out / "start_router.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, start.model.state_dict()[k])
    assert set(start.thresholds) == {"0.4", "0.7"}
    rows = {n: {float(k): r for k, r in chosen["rows"][n].items()} for n in ("start", "refined")}
    again = budget_choices(rows["start"], rows["refined"], rule="paired", level=0.9)
    assert {f"{k:g}": c["router"] for k, c in again.items()} == {
        k: c["router"] for k, c in chosen["budgets"].items()
    }
    for k, c in chosen["budgets"].items():
        assert c["router"] in ("start", "refined")
        assert router_for_budget(out, float(k)).name == c["file"]
        assert c["file"] == {"start": "start_router.pt", "refined": "router.pt"}[c["router"]]
        assert c["gain"]["value"] == pytest.approx(c["refined_utility"] - c["start_utility"])
        assert len(chosen["rows"]["start"][k]["returns"]) == 4
    # ... on the confirmation episodes: tasks the keep-best evaluations did not play
    evals = summary["evaluations"]
    assert chosen["rows"]["start"]["0.4"]["returns"] != evals[0]["returns"]
    with pytest.raises(CheckpointError, match=r"expected one of them, got 0.2"):
        router_for_budget(out, 0.2)
    # a resumed run without the selection leaves no stale choice behind
    train_grpo(_cfg(out, **{**kw, "resume": True, "keep_best_per_budget": False}))
    assert not (out / "budget_selection.json").exists() and not (out / "start_router.pt").exists()
    assert router_for_budget(out, 0.4) == out / "router.pt"
    # off: no start router, router.pt at every K
    train_grpo(_cfg(tmp_path / "b", **kw, keep_best_per_budget=False))
    assert not (tmp_path / "b" / "start_router.pt").exists()
    assert router_for_budget(tmp_path / "b", 0.2) == tmp_path / "b" / "router.pt"


def _init_router(path):
    """A small untrained router for WebShop, calibrated (by hand) at K = 0.4."""
    import gymnasium as gym

    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    env = gym.make("DMR-WebShop-v0")
    u = env.unwrapped
    torch.manual_seed(0)
    model = TransformerRouter(
        RouterConfig(embed_dim=u.embedding_dim, max_len=u.max_history, d_model=16, n_layers=1)
    )
    meta = {"task": u.task.name, "tier_names": list(u.tier_names)}
    policy = TransformerRouterPolicy(model, thresholds={"0.4": 0.5}, metadata=meta)
    policy.save(path)
    env.close()
    return policy


def test_hold_bias_on_known_margins():
    """Equal margins: the shift is logit(K) - d; symmetric margins +-m around 0 at K = 1/2: no
    shift; in general the expected sampled high fraction is K (three tiers: high against the
    log-sum-exp of the others)."""
    zeros = np.zeros((4, 2))
    assert hold_bias(zeros, 0.2) == pytest.approx(math.log(0.2 / 0.8), abs=1e-9)
    assert hold_bias(zeros + np.array([1.5, 0.0]), 0.2) == pytest.approx(
        math.log(0.25) - 1.5, abs=1e-9
    )
    sym = np.array([[2.0, 0.0], [-2.0, 0.0]])
    assert hold_bias(sym, 0.5) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3)) * 3
    b = hold_bias(logits, 0.3)
    shifted = logits + np.array([b, 0.0, 0.0])
    p_high = np.exp(shifted[:, 0]) / np.exp(shifted).sum(axis=1)
    assert p_high.mean() == pytest.approx(0.3, abs=1e-9)
    with pytest.raises(ConfigError, match=r"logits of shape \(N >= 1, tiers >= 2\), got \(4,\)"):
        hold_bias(np.zeros(4), 0.4)
    with pytest.raises(ConfigError, match=r"a budget in \(0, 1\), got 1.0"):
        hold_bias(zeros, 1.0)
    with pytest.raises(ConfigError, match="hold_sample_budget needs sample_budget"):
        GRPOConfig(hold_sample_budget=True)
    with pytest.raises(ConfigError, match=r"hold_step must be in \(0, 1\], got 0.0"):
        GRPOConfig(hold_step=0.0)


def test_held_budget_moves_the_shift_each_update_and_resumes(tmp_path):
    """hold_sample_budget: the logged shift is re-centred after each update (not the start's
    log((1 - tau) / tau)), and a resumed run repeats the same shifts and curve."""
    from training.grpo import budget_bias

    _init_router(tmp_path / "init.pt")
    kw = dict(
        init_checkpoint=str(tmp_path / "init.pt"), sample_budget=0.4, hold_sample_budget=True,
        lr=0.05, eval_every=0,
    )  # fmt: skip
    train_grpo(_cfg(tmp_path / "a", **kw))
    rows = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    start = budget_bias(str(tmp_path / "init.pt"), 0.4)
    shifts = [r["high_bias"] for r in rows]
    assert len(shifts) == 2 and all(b != start for b in shifts) and shifts[0] != shifts[1]
    first = GRPOTrainer(_cfg(tmp_path / "b", **{**kw, "max_updates": 1}))
    first.train()
    first.close()
    train_grpo(_cfg(tmp_path / "b", **kw, resume=True))
    again = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["high_bias"] for r in again] == shifts
    assert _curve(tmp_path / "b" / "log.jsonl") == _curve(tmp_path / "a" / "log.jsonl")


def test_last_router_routes_at_the_runs_last_sampling_point(tmp_path):
    """``last_router``: the checkpoint's router (not the shipped one), greedy at the last held
    shift b, i.e. the threshold rule at tau = sigmoid(-b); a folder without a run is refused
    by name."""
    from training.grpo import CHECKPOINT, last_router

    _init_router(tmp_path / "init.pt")
    cfg = _cfg(tmp_path / "a", init_checkpoint=str(tmp_path / "init.pt"), sample_budget=0.4,
               hold_sample_budget=True, lr=0.05, eval_every=0, max_updates=1)  # fmt: skip
    train_grpo(cfg)
    rows = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    policy = last_router(tmp_path / "a")
    b = rows[-1]["high_bias"]
    assert policy.threshold == pytest.approx(1 / (1 + math.exp(b)))
    op = policy.metadata["operating_point"]
    assert op["high_bias"] == pytest.approx(b) and op["sample_budget"] == 0.4
    assert op["update"] == 1 and policy.thresholds == {}
    state = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)["router"]["state_dict"]
    for k, v in policy.model.state_dict().items():
        assert torch.equal(v, state[k])
    probs = np.array([[0.9, 0.1], [policy.threshold * 1.01, 0.5], [policy.threshold * 0.99, 0.5]])
    assert policy.route(probs).tolist() == [0, 0, 1]
    with pytest.raises(CheckpointError, match="expected a train-grpo run folder holding"):
        last_router(tmp_path / "nothing")


def test_moved_run_resumes_and_another_start_router_is_refused(tmp_path):
    """A run folder moved with its KL-ST router resumes (``out`` and the init path changed,
    same start weights) to the curve of the run left in place; a different start router under
    the old name is refused, naming init_checkpoint. Fields a checkpoint predates resume at
    their defaults."""
    import shutil

    from training.trainer import config_diff

    _init_router(tmp_path / "a" / "init.pt")
    kw = dict(sample_budget=0.4, eval_every=0)
    train_grpo(_cfg(tmp_path / "a" / "run", init_checkpoint=str(tmp_path / "a" / "init.pt"), **kw))
    _init_router(tmp_path / "b0.pt")  # the same router, another file
    first = GRPOTrainer(
        _cfg(tmp_path / "b" / "run", init_checkpoint=str(tmp_path / "b0.pt"), **kw, max_updates=1)
    )
    first.train()
    first.close()
    shutil.move(tmp_path / "b", tmp_path / "moved")
    shutil.move(tmp_path / "b0.pt", tmp_path / "moved" / "init.pt")
    moved = _cfg(
        tmp_path / "moved" / "run",
        init_checkpoint=str(tmp_path / "moved" / "init.pt"),
        resume=True,
        **kw,
    )
    train_grpo(moved)
    assert _curve(tmp_path / "moved" / "run" / "log.jsonl") == _curve(
        tmp_path / "a" / "run" / "log.jsonl"
    )

    other = tmp_path / "other.pt"
    _init_router(other)
    from agents.router import TransformerRouterPolicy

    policy = TransformerRouterPolicy.load(other)
    with torch.no_grad():
        next(policy.model.parameters()).add_(1.0)
    policy.save(other)
    with pytest.raises(ConfigError, match=r"different configuration .*init_checkpoint: \("):
        GRPOTrainer(
            _cfg(tmp_path / "moved" / "run", init_checkpoint=str(other), resume=True, **kw)
        ).train()

    # a setting the checkpoint predates compares as its default (old runs ran with it)
    assert config_diff({"a": 1}, {"a": 1, "new": 0.0}, defaults={"new": 0.0}) == {}
    assert config_diff({"a": 1}, {"a": 1, "new": 1.0}, defaults={"new": 0.0}) == {"new": (0.0, 1.0)}
    assert config_diff({"a": 1}, {"a": 1, "new": 1.0}) == {"new": (None, 1.0)}


@pytest.mark.parametrize(("seed", "shipped"), [(1, "refined"), (2, "start")])
def test_kept_router_is_confirmed_on_fresh_episodes_or_the_start_ships(tmp_path, seed, shipped):
    """confirm_episodes: a later router that keep-best kept is played again, with the start,
    on tasks the keep-best evaluations did not use; router.pt is the kept router only where the
    rule holds there too (seed 1), else the start router's weights (seed 2)."""
    from agents.router import TransformerRouterPolicy
    from training.selection import eval_plan, select_best

    kw = dict(lr=0.5, max_updates=2, eval_every=1, eval_episodes=4, confirm_episodes=8)
    summary = train_grpo(_cfg(tmp_path, seed=seed, **kw))
    conf = json.loads((tmp_path / "confirmation.json").read_text())
    assert summary["confirmation"] == conf and conf["update"] == 1  # keep-best kept update 1 ...
    assert summary["selected_update"] == {"refined": 1, "start": 0}[shipped]
    used, _ = eval_plan(19, 4, seed)  # WebShop's 19-task eval split
    assert len(conf["tasks"]) == 8 and not set(conf["tasks"]) & set(used)
    rows = conf["rows"]
    assert conf["router"] == (
        "refined" if select_best([rows["start"], rows["refined"]]) else "start"
    )
    assert conf["router"] == shipped  # ... and the fresh episodes decide
    assert conf["gain"]["value"] == pytest.approx(
        rows["refined"]["utility"] - rows["start"]["utility"]
    )
    final = TransformerRouterPolicy.load(tmp_path / "router.pt")
    expected = {"refined": TransformerRouterPolicy.load(tmp_path / "best_router.pt").model}
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    from training.grpo import _model_from_state

    expected["start"] = _model_from_state(state["ref_router"])
    for k, v in final.model.state_dict().items():
        assert torch.equal(v, expected[shipped].state_dict()[k])
    assert final.metadata["grpo_selected"]["confirmed"] is (shipped == "refined")
    with pytest.raises(ConfigError, match="confirm_episodes must be >= 0, got -1"):
        GRPOConfig(confirm_episodes=-1)
