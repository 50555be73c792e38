"""KL-ST maths (class weights, weighted CE, balanced accuracy, plateau threshold) and training
determinism / resume on a tiny synthetic KL collection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from precision_gym.error import CheckpointError, ConfigError
from training.kl_st import TrainConfig, split_by_task, train_klst, weighted_cross_entropy
from training.thresholds import (
    balanced_accuracy,
    class_weights,
    kl_labels,
    plateau_threshold,
    plot_kl_histogram,
)


def make_synthetic_kl(root, n_episodes: int = 12, seed: int = 0, dim: int = 384):
    """A KL collection folder in the collect-kl format with a learnable signal: KL is high
    exactly when the newest step vector has a positive first coordinate."""
    from training.kl_collect import FORMAT_VERSION, _save_shard, _write_index

    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(n_episodes):
        n = int(rng.integers(3, 9))
        vec = rng.normal(size=(n + 1, dim)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        t = list(range(1, n + 1))
        kl = [
            [
                float(10 ** rng.normal(0.3, 0.2))
                if vec[i - 1, 0] > 0.05
                else float(10 ** rng.normal(-4, 0.5))
            ]
            for i in t
        ]
        episodes.append(
            {
                "vectors": vec.astype(np.float16),
                "rows": {"t": t, "step": list(range(n)), "kl": kl, "kind": ["manipulation"] * n},
                "task_id": f"task-{e}",
                "task_type": "pick_and_place_simple",
                "task_index": e,
                "won": True,
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    half = n_episodes // 2
    _save_shard(root / "shard_00000.npz", episodes[:half], 1)
    _save_shard(root / "shard_00001.npz", episodes[half:], 1)
    _write_index(
        root,
        {
            "format_version": FORMAT_VERSION,
            "config": {},
            "tier_names": ["bf16-sim", "w4-sim"],
            "simulated": True,
            "embedding_dim": dim,
            "max_history": 64,
            "shards": {
                "0": {"file": "shard_00000.npz", "episodes": half},
                "1": {"file": "shard_00001.npz", "episodes": n_episodes - half},
            },
        },
    )
    return root


@pytest.fixture
def synthetic_kl(tmp_path):
    torch.set_num_threads(1)
    return make_synthetic_kl(tmp_path / "kl")


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    # N / (C * N_c): 4 / (2 * 3) and 4 / (2 * 1)
    np.testing.assert_allclose(w, [2 / 3, 2.0])
    assert class_weights(np.array([1, 1]), 3).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match=r"labels must be in \[0, 2\), got 0..2"):
        class_weights(np.array([0, 2]), 2)
    with pytest.raises(ConfigError, match="needs at least one label"):
        class_weights(np.array([], dtype=int), 2)


def test_weighted_cross_entropy_known_values():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (.5,.5), (.75,.25)
    labels = torch.tensor([0, 1])
    w = torch.tensor([1.0, 3.0])
    expected = (1.0 * math.log(2.0) + 3.0 * math.log(4.0)) / 4.0
    got = float(weighted_cross_entropy(logits, labels, w))
    assert got == pytest.approx(expected, rel=1e-6)


def test_balanced_accuracy():
    y = np.array([0, 0, 0, 0, 1])
    assert balanced_accuracy(y, np.zeros(5)) == 0.5  # majority guess gets no credit
    assert balanced_accuracy(y, y) == 1.0
    assert balanced_accuracy(y, np.array([0, 0, 1, 1, 1])) == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="differ in length: 5 vs 2"):
        balanced_accuracy(y, np.array([0, 1]))


def test_kl_labels_binary_and_multi_tier():
    assert kl_labels(np.array([0.0, 0.1, 5.0]), 0.1).tolist() == [0, 0, 1]
    kl = np.array([[0.0, 0.0], [0.0, 2.0], [3.0, 4.0]])  # two lower tiers
    assert kl_labels(kl, 0.1).tolist() == [2, 1, 0]


def test_plateau_threshold_on_bimodal_sample():
    rng = np.random.default_rng(0)
    low = 10 ** rng.normal(-4.0, 0.7, 900)
    high = 10 ** rng.normal(0.5, 0.3, 100)
    kl = np.concatenate([low, high, np.zeros(50)])
    choice = plateau_threshold(kl)
    assert choice.method == "auto"
    assert 1e-2 < choice.tau < 1.0
    assert choice.gap_low < choice.tau < choice.gap_high
    assert choice.n_above == int((kl > choice.tau).sum()) and choice.n_above in range(95, 101)
    assert choice.n_below + choice.n_above == len(kl)
    manual = plateau_threshold(kl, tau=0.5)
    assert manual.method == "manual" and manual.tau == 0.5
    assert "states below" in choice.describe()


def test_plateau_threshold_errors(tmp_path):
    with pytest.raises(ConfigError, match="found no sparse gap"):
        plateau_threshold(np.full(100, 0.3))
    with pytest.raises(ConfigError, match="KL values must be >= 0"):
        plateau_threshold(np.array([-1.0, 1.0]))
    with pytest.raises(ConfigError, match="manual tau_KL must be > 0"):
        plateau_threshold(np.array([1.0]), tau=0.0)
    kl = np.concatenate([np.full(90, 1e-4), np.full(10, 3.0)])
    png = plot_kl_histogram(kl, plateau_threshold(kl), tmp_path / "h.png", simulated=True)
    assert png.stat().st_size > 1000


def test_split_by_task_keeps_tasks_whole():
    tasks = np.array(["a", "a", "b", "c", "c", "d", "e"])
    tr, va = split_by_task(tasks, 0.4, seed=0)
    assert not set(tasks[tr]) & set(tasks[va]) and va.any() and tr.any()
    tr2, va2 = split_by_task(tasks, 0.4, seed=0)
    assert (va == va2).all()
    with pytest.raises(ConfigError, match=">= 2 distinct tasks, got 1"):
        split_by_task(np.array(["a", "a"]), 0.5, 0)


def test_train_config_validation():
    with pytest.raises(ConfigError, match=r"TrainConfig.val_fraction must be in \(0, 1\), got 1.5"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"TrainConfig\.epochs must be >= 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        TrainConfig(d_model=30)


def _tiny_cfg(data, out, **kw):
    base = dict(
        data=str(data),
        out=str(out),
        epochs=3,
        batch_size=16,
        d_model=16,
        n_layers=2,
        n_heads=2,
        patience=5,
        threads=1,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def test_training_is_deterministic_and_resumable(synthetic_kl, tmp_path):
    a = train_klst(_tiny_cfg(synthetic_kl, tmp_path / "a"), progress=False)
    b = train_klst(_tiny_cfg(synthetic_kl, tmp_path / "b"), progress=False)
    curve = [(h["train_loss"], h["val_loss"], h["val_balanced_accuracy"]) for h in a.history]
    assert curve == [
        (h["train_loss"], h["val_loss"], h["val_balanced_accuracy"]) for h in b.history
    ]
    assert len(a.history) == 3 and (tmp_path / "a" / "router.pt").exists()
    # interrupted after 1 epoch, then resumed to 3: the same curve as uninterrupted
    train_klst(_tiny_cfg(synthetic_kl, tmp_path / "c", epochs=1), progress=False)
    c = train_klst(_tiny_cfg(synthetic_kl, tmp_path / "c"), progress=False, resume=True)
    assert [(h["train_loss"], h["val_loss"]) for h in c.history] == [
        (h["train_loss"], h["val_loss"]) for h in a.history
    ]
    with pytest.raises(CheckpointError, match="cannot resume"):
        train_klst(_tiny_cfg(synthetic_kl, tmp_path / "c", lr=1e-2), progress=False, resume=True)
    assert (tmp_path / "a" / "kl_hist.png").stat().st_size > 1000


def test_training_on_aggregated_collections(tmp_path):
    """train-klst --data A,B: both collections' states (DAgger's aggregation), tasks split
    as one (the same task in both stays on one side), both folders in the router's
    metadata."""
    from agents.router import TransformerRouterPolicy
    from training.kl_collect import load_kl_dataset

    torch.set_num_threads(1)
    a = make_synthetic_kl(tmp_path / "a", seed=0)
    b = make_synthetic_kl(tmp_path / "b", seed=1)
    res = train_klst(_tiny_cfg(f"{a},{b}", tmp_path / "out"), progress=False)
    both = load_kl_dataset([a, b])
    assert res.n_train + res.n_val == len(both) > len(load_kl_dataset(a))
    meta = TransformerRouterPolicy.load(res.router_path).metadata
    assert meta["kl_data"] == f"{a.resolve()},{b.resolve()}"
    train = set(meta["train_tasks"])
    assert 0 < len(train) < len(set(both.task_id.tolist()))
    assert res.n_train == int(np.isin(both.task_id, list(train)).sum())  # tasks kept whole
    with pytest.raises(CheckpointError, match="no KL collection at"):
        train_klst(_tiny_cfg(f"{a},{tmp_path / 'none'}", tmp_path / "bad"), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before the output folder is made
