"""Transformer router: masking, last-valid pooling, threshold routing, save/load."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from agents.router import (
    DEFAULT_THRESHOLD,
    RouterConfig,
    TransformerRouter,
    TransformerRouterPolicy,
    load_router_policy,
    logit,
    routes_alike,
    routing_digest,
    sigmoid,
)
from precision_gym.error import CheckpointError, ConfigError

torch.set_num_threads(1)
CFG = RouterConfig(d_model=32, n_layers=2, n_heads=2, dropout=0.0)


def _obs(n_valid: int, seed: int = 0, batch: int | None = None):
    rng = np.random.default_rng(seed)
    shape = (64, 384) if batch is None else (batch, 64, 384)
    emb = rng.normal(0, 0.05, size=shape).astype(np.float32)
    mask = np.zeros(shape[:-1], dtype=np.float32)
    mask[..., :n_valid] = 1.0
    emb[..., n_valid:, :] = 0.0
    return {"embeddings": emb, "mask": mask}


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return TransformerRouterPolicy(TransformerRouter(CFG))


def test_padding_content_does_not_change_output(policy):
    obs = _obs(5)
    base = policy.probs(obs)
    noisy = {k: v.copy() for k, v in obs.items()}
    noisy["embeddings"][5:] = np.random.default_rng(1).normal(size=(59, 384))
    np.testing.assert_allclose(policy.probs(noisy), base, atol=1e-6)
    # the uncut (full-length, masked) path agrees with the trimmed one
    model = policy.model
    with torch.inference_mode():
        x = model.input_proj(torch.from_numpy(noisy["embeddings"][None])) + model.pos_emb
        pad = torch.from_numpy(noisy["mask"][None] < 0.5)
        h = model.encoder(x, src_key_padding_mask=pad)
        full = torch.softmax(model.head(model.norm(h[:, 4])), -1).numpy()
    np.testing.assert_allclose(full, base, atol=1e-5)


def test_last_valid_step_pooling(policy):
    obs = _obs(5)
    changed = {k: v.copy() for k, v in obs.items()}
    changed["embeddings"][4] += 0.5  # the last valid step matters
    assert not np.allclose(policy.probs(changed), policy.probs(obs))
    longer = _obs(6)
    longer["embeddings"][:5] = obs["embeddings"][:5]
    assert not np.allclose(policy.probs(longer), policy.probs(obs))


def test_batched_matches_single_and_predict_contract(policy):
    batch = _obs(7, batch=3)
    batch["mask"][1, 3:] = 0.0
    batch["embeddings"][1, 3:] = 0.0
    probs = policy.probs(batch)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-6)
    for i in range(3):
        single = {k: v[i] for k, v in batch.items()}
        np.testing.assert_allclose(policy.probs(single)[0], probs[i], atol=1e-5)
    actions, state = policy.predict(batch)
    assert actions.shape == (3,) and state is None
    action, _ = policy.predict({k: v[0] for k, v in batch.items()})
    assert action.shape == () and int(action) in (0, 1)
    assert policy.charges_router_cost is True
    assert policy.high_precision_score(batch).shape == (3,)


def test_threshold_routing(policy):
    probs = np.array([[0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
    assert policy.route(probs).tolist() == [1, 0, 0]  # tier 0 iff score >= tau
    assert policy.route(probs, threshold=0.2).tolist() == [0, 0, 0]
    assert policy.threshold == DEFAULT_THRESHOLD
    three = np.array([[0.1, 0.2, 0.7], [0.1, 0.6, 0.3]])
    assert policy.route(three).tolist() == [2, 1]


def test_save_load_round_trip(policy, tmp_path):
    policy.thresholds = {"0.4": 0.123, "0.2": 0.3}
    policy.metadata = {"tau_kl": 0.05}
    path = policy.save(tmp_path / "r.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["r.pt"]  # no temp file left
    loaded = load_router_policy(path, budget=0.4)
    assert loaded.threshold == 0.123 and loaded.budget == 0.4
    assert loaded.metadata["tau_kl"] == 0.05 and loaded.config == CFG
    obs = _obs(9)
    np.testing.assert_allclose(loaded.probs(obs), policy.probs(obs), atol=1e-6)
    assert load_router_policy(path).threshold == DEFAULT_THRESHOLD
    with pytest.raises(CheckpointError, match=r"budget K=0.7 was not calibrated.*\[0.2, 0.4\]"):
        load_router_policy(path, budget=0.7)


def test_save_is_atomic(policy, tmp_path, monkeypatch):
    path = policy.save(tmp_path / "r.pt")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    policy.thresholds = {"0.4": 0.9}
    with pytest.raises(OSError, match="disk full"):
        policy.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.pt"]


def test_routes_alike_compares_weights_and_the_threshold_at_k_not_metadata(policy, tmp_path):
    policy.thresholds = {"0.4": 0.123, "0.7": 0.01}
    policy.metadata = {"trained_with": "KL-ST"}
    a = policy.save(tmp_path / "a.pt")
    policy.metadata = {"trained_with": "GRPO"}  # a GRPO run that shipped its start
    b = policy.save(tmp_path / "b.pt")
    assert routes_alike(a, b, 0.4) and routes_alike(b, a, 0.7)
    policy.thresholds = {"0.4": 0.123, "0.7": 0.02}  # recalibrated at 0.7 only
    c = policy.save(tmp_path / "c.pt")
    assert routes_alike(a, c, 0.4) and not routes_alike(a, c, 0.7)
    assert not routes_alike(a, b, 0.2)  # calibrated at neither: no threshold to compare
    with torch.no_grad():
        next(policy.model.parameters()).view(-1)[0] += 1e-6  # one weight, one ulp-ish step
    d = policy.save(tmp_path / "d.pt")
    assert not routes_alike(c, d, 0.4)
    obs = _obs(7, batch=4)  # alike files decide alike (the benchmark reuses rows on that)
    one, two = (TransformerRouterPolicy.load(p, budget=0.4) for p in (a, b))
    np.testing.assert_array_equal(one.predict(obs)[0], two.predict(obs)[0])
    np.testing.assert_array_equal(one.probs(obs), two.probs(obs))
    with pytest.raises(
        CheckpointError, match=r"router checkpoint not found: expected a file at .*nope\.pt"
    ):
        routes_alike(a, tmp_path / "nope.pt", 0.4)


def test_routing_digest_changes_with_what_routes_and_nothing_else(policy, tmp_path):
    policy.thresholds = {"0.4": 0.123, "0.7": 0.01}
    policy.metadata = {"trained_with": "KL-ST"}
    a = policy.save(tmp_path / "a.pt")
    ks = (0.4, 0.7)
    assert (
        routing_digest(a, ks) == routing_digest(a, [0.4, 0.7]) and len(routing_digest(a, ks)) == 64
    )
    policy.metadata = {"trained_with": "GRPO"}
    policy.thresholds = {"0.4": 0.123, "0.7": 0.01, "0.9": 0.001}  # calibrated at a new K too
    b = policy.save(tmp_path / "b.pt")
    assert routing_digest(b, ks) == routing_digest(a, ks) and routes_alike(a, b, 0.7)
    assert routing_digest(b, (0.4, 0.7, 0.9)) != routing_digest(a, (0.4, 0.7, 0.9))
    policy.thresholds = {"0.4": 0.123, "0.7": 0.02}  # recalibrated at 0.7
    assert routing_digest(policy.save(tmp_path / "c.pt"), ks) != routing_digest(a, ks)
    policy.thresholds = {"0.4": 0.123, "0.7": 0.01}
    with torch.no_grad():
        next(policy.model.parameters()).view(-1)[0] += 1e-6  # one weight
    assert routing_digest(policy.save(tmp_path / "d.pt"), ks) != routing_digest(a, ks)
    with pytest.raises(CheckpointError, match=r"router checkpoint not found: expected a file at"):
        routing_digest(tmp_path / "nope.pt", ks)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="router checkpoint not found"):
        load_router_policy(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="is corrupt or not a torch file"):
        load_router_policy(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(CheckpointError, match="not a Transformer-router checkpoint"):
        load_router_policy(other)


def test_config_validation():
    with pytest.raises(ConfigError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        RouterConfig(d_model=30)
    with pytest.raises(ConfigError, match="n_tiers must be >= 2, got 1"):
        RouterConfig(n_tiers=1)
    with pytest.raises(ConfigError, match="exceeds the router's max_len 64"):
        TransformerRouter(CFG)(torch.zeros(1, 65, 384), torch.ones(1, 65))


# --------------------------------------------------------------- online budget control
def test_online_budget_control_holds_k_under_a_score_shift():
    from agents.router import OnlineBudgetControl

    rng = np.random.default_rng(0)
    calib = rng.beta(2, 5, size=5000)  # scores on the calibration pool
    tau_k = float(np.quantile(calib, 1 - 0.4))
    shifted = rng.beta(4, 3, size=3000)  # the deployed stream scores higher
    assert (shifted >= tau_k).mean() > 0.8  # a fixed tau_K overshoots K badly
    ctl = OnlineBudgetControl(0.4, tau_k, step=0.2)
    tau, routed = tau_k, []
    for s in shifted:
        routed.append(s >= tau)
        tau = ctl.update(np.array([routed[-1]]))
    assert abs(np.mean(routed) - 0.4) < 0.02 and ctl.decisions == 3000
    assert ctl.high == sum(routed) and tau > tau_k  # the bar went up
    ctl.reset()
    assert ctl.threshold == pytest.approx(tau_k) and ctl.decisions == 0


@pytest.mark.parametrize("budget", [0.2, 0.4, 0.7])
def test_stream_quantile_holds_k_on_a_short_shifted_stream(budget):
    """36 decisions (6 episodes of 6, each with its own offset) whose scores sit far above
    the calibration pool's: the integral term alone cannot walk tau_K far enough in so few
    decisions; with the stream quantile the realised rate lands within 0.05 of K."""
    from agents.router import OnlineBudgetControl

    rng = np.random.default_rng(1)
    tau_k = float(np.quantile(rng.beta(2, 5, size=5000), 1 - budget))
    stream = np.concatenate(
        [np.clip(rng.beta(4, 3, size=6) + rng.normal(0, 0.05), 0, 1) for _ in range(6)]
    )

    def realised(**kwargs):
        ctl, tau, routed = OnlineBudgetControl(budget, tau_k, **kwargs), tau_k, []
        for s in stream:
            routed.append(s >= tau)
            tau = ctl.update(np.array([routed[-1]]), scores=np.array([s]))
        assert ctl.decisions == len(stream) == len(ctl.scores)
        return float(np.mean(routed))

    assert abs(realised(step=0.5, max_deficit=None) - budget) <= 0.05  # quantile alone
    assert abs(realised(step=0.5) - budget) <= 0.05  # the default: with the pacing guard
    # the controller shipped before (integral term only, step 0.2) stays far off
    old = {"step": 0.2, "track_quantile": False, "max_deficit": None}
    assert abs(realised(**old) - budget) > 0.1


def test_pacing_guard_forces_the_decision_when_the_stream_is_too_far_from_k():
    from agents.router import OnlineBudgetControl

    ctl = OnlineBudgetControl(0.4, 0.99, step=0.5, max_deficit=1.5, track_quantile=False)
    ctl.update(np.zeros(3, dtype=bool))  # deficit 1.2: the threshold still decides
    assert 0.0 < ctl.threshold < 1.0
    ctl.update(np.zeros(1, dtype=bool))  # deficit 1.6 >= 1.5: every score clears 0
    assert ctl.deficit == pytest.approx(1.6) and ctl.threshold == 0.0
    ctl.update(np.ones(4, dtype=bool))  # 4 of 8 high: 0.8 ahead, free again
    assert 0.0 < ctl.threshold < 1.0
    ctl.update(np.ones(2, dtype=bool))  # 6 of 10: 2.0 ahead -> no score reaches it
    assert ctl.threshold > 1.0
    with pytest.raises(ValueError, match="max_deficit must be > 0 or None, got 0"):
        OnlineBudgetControl(0.4, 0.5, max_deficit=0)


def test_stream_quantile_waits_for_warmup_and_uses_its_window():
    from agents.router import OnlineBudgetControl

    ctl = OnlineBudgetControl(0.25, 0.3, step=0.5, window=8, max_deficit=None)
    assert ctl.warmup == 4
    for _ in range(3):  # before warm-up: tau_K plus the integral term only
        ctl.update(np.array([False]), scores=np.array([0.9]))
    assert ctl.threshold == pytest.approx(sigmoid(logit(0.3) - 3 * 0.5 * 0.25))
    ctl.update(np.array([False]), scores=np.array([0.9]))  # warm: q = 0.9
    assert ctl.threshold == pytest.approx(sigmoid(logit(0.9) - 4 * 0.5 * 0.25))
    ctl.update(np.zeros(8, dtype=bool), scores=np.full(8, 0.1))  # the window forgot 0.9
    assert len(ctl.scores) == 8
    assert ctl.threshold == pytest.approx(sigmoid(logit(0.1) - 12 * 0.5 * 0.25))
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        OnlineBudgetControl(0.4, 0.5, window=0)


def test_online_budget_control_errors():
    from agents.router import OnlineBudgetControl

    with pytest.raises(ValueError, match=r"needs K in \(0, 1\), got 1.0"):
        OnlineBudgetControl(1.0, 0.5)
    with pytest.raises(ValueError, match="step must be > 0, got 0"):
        OnlineBudgetControl(0.4, 0.5, step=0)


def test_online_budget_control_in_the_policy(policy, tmp_path):
    policy.thresholds = {"0.4": 0.5}
    path = policy.save(tmp_path / "r.pt")
    online = load_router_policy(path, budget=0.4, online_step=0.5)
    assert online.name == "klst-router(K=0.4,online)" and online.threshold == 0.5
    obs = _obs(5)
    score = float(online.high_precision_score(obs)[0])
    actions = [int(online.predict(obs)[0]) for _ in range(40)]
    # the same state again and again: the threshold moves until it is routed high ~40%
    assert 0.3 <= np.mean(np.array(actions) == 0) <= 0.5
    assert abs(online.threshold - score) < 0.2
    fixed = load_router_policy(path, budget=0.4)
    assert fixed.online is None and fixed.name == "klst-router(K=0.4)"
    with pytest.raises(ValueError, match="online budget control needs a budget K, got none"):
        fixed.set_budget(None, online_step=0.2)
