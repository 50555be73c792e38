"""The training skeleton (training/trainer.py) on a small real trainer (least squares by
seeded minibatch SGD) and on KL-ST: resume refuses a changed setting and names it, a planted
checkpoint is refused without running it, an interrupted run ends with the weights of an
uninterrupted one, trained runs are never overwritten, the JSONL log follows the checkpoint."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_kl_st import make_synthetic_kl

from precision_gym.error import CheckpointError, ConfigError, ResumeConfigError
from precision_gym.io import atomic_torch_save, load_torch_checkpoint
from training.trainer import Trainer, config_diff, read_jsonl


@dataclass
class LstsqConfig:
    out: str
    steps: int = 6
    lr: float = 0.1
    seed: int = 0
    workers: int = 1


class LstsqTrainer(Trainer):
    """Fits ``y = X w`` by one seeded minibatch SGD step per training step."""

    checkpoint_file = "state.pt"
    checkpoint_format = "test/lstsq/v1"
    checkpoint_what = "least-squares state"
    artefacts = ("state.pt", "weights.pt")
    resumable_fields = ("steps", "workers")
    log_file = "log.jsonl"

    def __init__(self, cfg: LstsqConfig, **kw: Any) -> None:
        super().__init__(cfg, cfg.out, progress=False, **kw)
        rng = np.random.default_rng(123)
        self.x = torch.from_numpy(rng.normal(size=(64, 3)).astype(np.float32))
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.w = torch.zeros(3)

    @property
    def total_steps(self) -> int:
        return self.config.steps

    def train_step(self, step: int) -> dict[str, Any]:
        idx = torch.from_numpy(np.random.default_rng([self.config.seed, step]).choice(64, 16))
        err = self.x[idx] @ self.w - self.y[idx]
        self.w = self.w - self.config.lr * 2 * self.x[idx].T @ err / len(idx)
        return {"step": step, "loss": float((err**2).mean())}

    def state_dict(self) -> dict[str, Any]:
        return {"w": self.w}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = state["w"]


def _run(out: Path, **kw: Any) -> LstsqTrainer:
    resume = kw.pop("resume", False)
    overwrite = kw.pop("overwrite", False)
    trainer = LstsqTrainer(LstsqConfig(out=str(out), **kw), resume=resume, overwrite=overwrite)
    trainer.train()
    return trainer


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    full = _run(tmp_path / "a")
    assert full.steps_done == 6 and len(full.history) == 6
    _run(tmp_path / "b", steps=2)  # "interrupted" after 2 steps
    resumed = _run(tmp_path / "b", resume=True, workers=4)  # a resumable field may change
    assert torch.equal(resumed.w, full.w)
    assert resumed.history == full.history
    assert read_jsonl(tmp_path / "b" / "log.jsonl") == full.history
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert state["format"] == "test/lstsq/v1" and state["steps_done"] == 6


def test_resume_refuses_a_changed_config_and_names_the_field(tmp_path):
    _run(tmp_path, steps=2)
    with pytest.raises(ResumeConfigError, match=r"different configuration .*lr: \(0\.1, 0\.5\)"):
        _run(tmp_path, resume=True, lr=0.5)
    # both kinds of error a caller may catch: a checkpoint and a configuration fault
    assert issubclass(ResumeConfigError, CheckpointError)
    assert issubclass(ResumeConfigError, ConfigError)
    assert config_diff({"a": [1, 2], "b": 1}, {"a": (1, 2), "b": 2, "c": 3}, ("c",)) == {
        "b": (1, 2)
    }


def test_planted_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "PWNED"

    class Touch:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "run").mkdir()
    torch.save({"format": "test/lstsq/v1", "payload": Touch()}, tmp_path / "run" / "state.pt")
    with pytest.raises(CheckpointError, match="not a tensors-only file: expected a tensors-only"):
        _run(tmp_path / "run", resume=True)
    assert not marker.exists()
    atomic_torch_save({"format": "other"}, tmp_path / "run" / "state.pt")
    with pytest.raises(CheckpointError, match="expected format 'test/lstsq/v1', found 'other'"):
        _run(tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="expected a checkpoint at"):
        _run(tmp_path / "fresh", resume=True)


def test_a_trained_run_is_never_overwritten_without_a_flag(tmp_path):
    first = _run(tmp_path)
    with pytest.raises(ConfigError, match=r"already holds a trained run \(state\.pt\): state"):
        _run(tmp_path)
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        _run(tmp_path, resume=True, overwrite=True)
    again = _run(tmp_path, overwrite=True, seed=1)
    assert not torch.equal(again.w, first.w)


def test_resume_drops_log_rows_of_a_step_that_never_checkpointed(tmp_path):
    _run(tmp_path, steps=2)
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text() + json.dumps({"step": 2, "loss": 9.0}) + '\n{"step": 3, "lo')
    assert len(read_jsonl(log)) == 3  # the torn last line is dropped
    resumed = _run(tmp_path, resume=True, steps=3)
    assert [r["step"] for r in read_jsonl(log)] == [0, 1, 2]
    assert read_jsonl(log)[2] == resumed.history[2] != {"step": 2, "loss": 9.0}


def test_klst_resume_ends_with_the_uninterrupted_weights(tmp_path):
    from training.kl_st import TrainConfig, train_klst

    torch.set_num_threads(1)
    data = make_synthetic_kl(tmp_path / "kl")
    base = dict(data=str(data), epochs=3, batch_size=16, d_model=16, n_layers=1, n_heads=2)
    base.update(threads=1, seed=3)
    train_klst(TrainConfig(out=str(tmp_path / "a"), **base), progress=False)
    train_klst(TrainConfig(out=str(tmp_path / "b"), **{**base, "epochs": 1}), progress=False)
    train_klst(TrainConfig(out=str(tmp_path / "b"), **base), progress=False, resume=True)
    fmt = "precision-gym/transformer-router/v1"
    a = load_torch_checkpoint(tmp_path / "a" / "router.pt", fmt, "router")["state_dict"]
    b = load_torch_checkpoint(tmp_path / "b" / "router.pt", fmt, "router")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_old_torch_checkpoint_names_in_agents_router_still_work_and_warn(tmp_path):
    from agents import router

    with pytest.warns(DeprecationWarning, match="moved to precision_gym.io.atomic_torch_save"):
        router.atomic_torch_save({"format": "f", "x": torch.ones(2)}, tmp_path / "c.pt")
    with pytest.warns(DeprecationWarning, match="precision_gym.io.load_torch_checkpoint"):
        ckpt = router.load_torch_checkpoint(tmp_path / "c.pt", "f", "test file")
    assert torch.equal(ckpt["x"], torch.ones(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_torch_checkpoint(tmp_path / "c.pt", "f", "test file")  # the new name: silent
