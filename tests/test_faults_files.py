"""Fault injection, files (issue 13, probes 1-6, 14, 16): nothing lost, nothing run from a
file. Planted files whose unpickling would run code (touch a marker file) must be refused
without running it; trained artefacts are never overwritten without --resume/--overwrite;
truncated files give clear errors or are re-collected."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_kl_st import make_synthetic_kl

from precision_gym.error import CheckpointError, ConfigError
from precision_gym.io import atomic_write_bytes, check_output_path, replacing


class _Touch:
    """Unpickling this object creates ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant_torch(path: Path, marker: Path, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"payload": _Touch(marker), **extra}, path)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _tiny_klst(data, out, **kw):
    from training.kl_st import TrainConfig

    base = dict(data=str(data), out=str(out), epochs=2, batch_size=16, d_model=16)
    base.update(n_layers=1, n_heads=2, patience=5, threads=1, seed=3)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- probe 1


def test_quantize_refuses_its_own_model_folder_and_a_full_out(tiny_qwen3_dir, tmp_path):
    from precision_gym.quantization import quantize_checkpoint

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen3_dir, model)
    before = _digest(model)
    proc = run_cli(
        "quantize", "--model", str(model), "--bits", "4", "--group", "64", "--out", str(model),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "is the --model folder itself: expected a different folder" in proc.stderr
    assert "Traceback" not in proc.stderr and _digest(model) == before
    out = quantize_checkpoint(model, 4, 64, tmp_path / "w4")
    first = _digest(out)
    with pytest.raises(ConfigError, match="is not empty: expected a new or empty folder"):
        quantize_checkpoint(model, 3, 64, out)
    assert _digest(out) == first
    quantize_checkpoint(model, 3, 64, out, overwrite=True)  # explicit: replaced as a whole
    assert json.loads((out / "config.json").read_text())["precision_gym_fake_quant"]["bits"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# ----------------------------------------------------------------------------- probes 2, 5


def test_train_klst_never_wipes_a_trained_router(tmp_path):
    from agents.router import TransformerRouterPolicy
    from training.kl_st import train_klst

    torch.set_num_threads(1)
    data = make_synthetic_kl(tmp_path / "kl")
    train_klst(_tiny_klst(data, tmp_path / "klst"), progress=False)
    router = tmp_path / "klst" / "router.pt"
    policy = TransformerRouterPolicy.load(router)
    policy.thresholds["0.4"] = 0.37  # as `calibrate` leaves it
    policy.save(router)
    before = router.read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a trained run \(router.pt, "):
        train_klst(_tiny_klst(data, tmp_path / "klst"), progress=False)
    assert router.read_bytes() == before
    proc = run_cli("train-klst", "--data", str(data), "--out", str(tmp_path / "klst"), check=False)
    assert proc.returncode == 2 and "pass --resume or --overwrite" in proc.stderr
    assert router.read_bytes() == before
    train_klst(_tiny_klst(data, tmp_path / "klst"), progress=False, overwrite=True)
    assert TransformerRouterPolicy.load(router).thresholds == {}  # replaced, as asked


def test_train_klst_resume_refuses_a_planted_state_without_running_it(tmp_path):
    from training.kl_st import train_klst

    torch.set_num_threads(1)
    data = make_synthetic_kl(tmp_path / "kl")
    marker = tmp_path / "PWNED"
    _plant_torch(tmp_path / "klst" / "train_state.pt", marker, epoch=0)
    with pytest.raises(CheckpointError, match="not a tensors-only file"):
        train_klst(_tiny_klst(data, tmp_path / "klst"), progress=False, resume=True)
    assert not marker.exists()
    # the state it writes itself is tensors-only and resumes
    train_klst(_tiny_klst(data, tmp_path / "ok", epochs=1), progress=False)
    torch.load(tmp_path / "ok" / "train_state.pt", weights_only=True)
    train_klst(_tiny_klst(data, tmp_path / "ok"), progress=False, resume=True)


def test_train_grpo_resume_refuses_a_planted_checkpoint_without_running_it(tmp_path):
    from training.grpo import GRPOConfig, GRPOTrainer

    marker = tmp_path / "PWNED"
    out = tmp_path / "grpo"
    _plant_torch(out / "checkpoint.pt", marker, format="precision-gym-grpo-checkpoint")
    cfg = GRPOConfig(
        env_id="DMR-WebShop-v0", pool_size=2, tasks_per_batch=1, group_size=2, max_updates=1,
        d_model=16, n_layers=1, n_heads=2, calibration_episodes=0, tensorboard=False,
        progress=False, out=str(out), resume=True,
    )  # fmt: skip
    trainer = GRPOTrainer(cfg)
    try:
        with pytest.raises(CheckpointError, match="expected a tensors-only torch file"):
            trainer.train()
    finally:
        trainer.close()
    assert not marker.exists()
    # a finished run's router is not replaced by a new run
    (out / "checkpoint.pt").unlink()
    (out / "router.pt").write_bytes(b"trained")
    with pytest.raises(ConfigError, match=r"router\.pt exists: pass --resume"):
        from training.grpo import train_grpo

        train_grpo(GRPOConfig(**{**cfg.__dict__, "resume": False}))
    assert (out / "router.pt").read_bytes() == b"trained"


# ----------------------------------------------------------------------------- probe 3


def test_truncated_kl_shard_is_recollected_on_resume(tmp_path):
    import gymnasium as gym

    from training.kl_collect import CollectConfig, collect_kl, load_kl_dataset

    cfg = CollectConfig(env_id="DMR-WebShop-v0", split="train", episodes=4, shard_size=2)
    env = gym.make("DMR-WebShop-v0")
    try:
        out = collect_kl(tmp_path / "kl", cfg, env=env, progress=False)
        full = load_kl_dataset(out)
        shard = out / "shard_00000.npz"
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # torn copy
        with pytest.raises(CheckpointError, match=r"shard_00000.npz is missing or corrupt"):
            load_kl_dataset(out)
        with pytest.warns(UserWarning, match="truncated or does not match its sha256"):
            collect_kl(out, cfg, env=env, progress=False)  # resume: collected again
    finally:
        env.close()
    again = load_kl_dataset(out)
    for name in ("vectors", "t", "kl", "task_id"):
        np.testing.assert_array_equal(getattr(full, name), getattr(again, name))
    assert json.loads((out / "index.json").read_text())["complete"]


# ----------------------------------------------------------------------------- probe 4


def test_train_sb3_keeps_a_previous_run(tmp_path):
    pytest.importorskip("stable_baselines3")
    from training.sb3_baselines import SB3Config, train_sb3

    cfg = SB3Config(
        algo="a2c", env_id="DMR-WebShop-v0", pool_size=2, total_timesteps=32, features="mlp",
        algo_kwargs={"n_steps": 8}, checkpoint_freq=0, tensorboard=False, progress=False,
        out=str(tmp_path), seed=1,
    )  # fmt: skip
    train_sb3(cfg)
    before = _digest(tmp_path)
    assert before["episodes.jsonl"] != hashlib.sha256(b"").hexdigest()
    with pytest.raises(ConfigError, match=r"already holds a trained run \(model.zip, episodes"):
        train_sb3(cfg)
    assert _digest(tmp_path) == before  # episodes.jsonl not emptied, model.zip intact
    train_sb3(SB3Config(**{**cfg.__dict__, "overwrite": True}))
    after = _digest(tmp_path)  # replaced atomically; same seed: the same learning curve
    assert after["episodes.jsonl"] == before["episodes.jsonl"] and "model.zip" in after
    assert not (tmp_path / "episodes.jsonl.partial").exists()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _old_run(root: Path) -> None:
    (root / "ckpt").mkdir(parents=True)
    (root / "ckpt" / "ppo_3000_steps.zip").write_text("old 3000")
    (root / "eval.jsonl").write_text("old eval")
    (root / "model.zip").write_text("old model")


def test_replacing_sets_old_outputs_aside_and_deletes_them_on_success(tmp_path):
    _old_run(tmp_path)
    with replacing(tmp_path, ["ckpt", "eval.jsonl", "absent.txt"]) as side:
        assert sorted(p.name for p in side.iterdir()) == ["ckpt", "eval.jsonl"]
        assert not (tmp_path / "ckpt").exists()
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "ppo_500_steps.zip").write_text("new 500")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["ppo_500_steps.zip"]
    assert not (tmp_path / "eval.jsonl").exists()  # the new run wrote none: no stale log
    assert (tmp_path / "model.zip").read_text() == "old model"  # not named: untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "model.zip"]


def test_replacing_restores_the_old_run_when_the_body_fails(tmp_path):
    _old_run(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), replacing(tmp_path, ["ckpt", "eval.jsonl"]):
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "ppo_500_steps.zip").write_text("half-written new run")
        (tmp_path / "eval.jsonl").write_text("new eval")
        raise RuntimeError("boom")
    assert _tree(tmp_path) == before
    assert not (tmp_path / ".replaced").exists()


def test_replacing_restores_what_a_killed_run_set_aside(tmp_path):
    """A process killed inside the body leaves ``.replaced``: the next call restores it
    first, so the earlier run is what gets set aside (or kept) again."""
    _old_run(tmp_path)
    before = _tree(tmp_path)
    (tmp_path / ".replaced").mkdir()
    os.replace(tmp_path / "ckpt", tmp_path / ".replaced" / "ckpt")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "partial.zip").write_text("killed run")
    with replacing(tmp_path, []):
        assert _tree(tmp_path) == before
    assert not (tmp_path / ".replaced").exists()


def test_train_sb3_overwrite_leaves_no_stale_checkpoints_or_tensorboard_runs(tmp_path):
    pytest.importorskip("stable_baselines3")
    from training.sb3_baselines import SB3Config, train_sb3

    cfg = SB3Config(
        algo="a2c", env_id="DMR-WebShop-v0", pool_size=2, total_timesteps=32, features="mlp",
        algo_kwargs={"n_steps": 8}, checkpoint_freq=8, eval_freq=16, eval_episodes=2,
        progress=False, out=str(tmp_path), seed=1,
    )  # fmt: skip
    train_sb3(cfg)
    assert len(list((tmp_path / "checkpoints").iterdir())) == 4
    train_sb3(SB3Config(**{**cfg.__dict__, "total_timesteps": 16, "overwrite": True}))
    zips = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert zips == ["a2c_16_steps.zip", "a2c_8_steps.zip"]  # not the first run's 24 and 32
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["a2c_1"]  # SB3 would say a2c_2
    evals = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [e["env_steps"] for e in evals] == [0, 16]
    assert not (tmp_path / ".replaced").exists()


# ----------------------------------------------------------------------------- probes 6, 14


def _planted_sb3_zip(path: Path, marker: Path) -> Path:
    """A real PPO archive for the env with one more cloudpickled entry that runs code."""
    import gymnasium as gym
    import stable_baselines3 as sb3

    real = path.with_name("real.zip")
    env = gym.make("DMR-WebShop-v0")
    sb3.PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, device="cpu").save(real)
    payload = base64.b64encode(pickle.dumps(_Touch(marker))).decode()
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            blob = src.read(name)
            if name == "data":
                data = json.loads(blob)
                data["planted"] = {":type:": "<class 'object'>", ":serialized:": payload}
                blob = json.dumps(data).encode()
            dst.writestr(name, blob)
    return path


def test_sb3_archive_needs_trust_checkpoint(tmp_path):
    pytest.importorskip("stable_baselines3")
    import gymnasium as gym

    from training.policies import load_policy_file

    marker = tmp_path / "PWNED"
    planted = _planted_sb3_zip(tmp_path / "model.zip", marker)
    env = gym.make("DMR-WebShop-v0")
    with pytest.raises(CheckpointError, match=r"unpickles Python objects .* --trust-checkpoint"):
        load_policy_file(planted, env)
    assert not marker.exists()
    load_policy_file(planted, env, trust_checkpoint=True)  # trusted: SB3 unpickles it
    assert marker.exists()  # what the flag guards against: the archive ran code
    marker.unlink()
    torn = tmp_path / "torn.zip"
    torn.write_bytes(planted.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="is not a readable zip archive"):
        load_policy_file(torn, env, trust_checkpoint=True)
    env.close()
    proc = run_cli("evaluate", "--env", "DMR-WebShop-v0", "--router", str(planted), check=False)
    assert proc.returncode == 2 and "--trust-checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()
    helptext = run_cli("evaluate", "--help").stdout
    assert "can run any code" in " ".join(helptext.split())


def test_evaluate_checks_out_and_env_kwargs_before_running(tmp_path):
    (tmp_path / "file").write_text("x")
    for out, want in (
        ("", "--out expects a file path, got an empty string"),
        (str(tmp_path / "file" / "eval.json"), "expected a writable folder"),
        (str(tmp_path), "got the existing folder"),
    ):
        proc = run_cli(
            "evaluate", "--env", "DMR-WebShop-v0", "--router", "always-low", "--out", out,
            "--episodes", "1", "--seeds", "0", "--quiet", check=False,
        )  # fmt: skip
        assert proc.returncode == 2 and want in proc.stderr, proc.stderr
        assert "success" not in proc.stdout  # nothing was evaluated
    proc = run_cli(
        "evaluate", "--env", "DMR-WebShop-v0", "--router", "always-low",
        "--env-kwargs", '{"nope": 1}', check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown env kwargs ['nope'] for DMR-WebShop-v0: expected some of [" in proc.stderr
    with pytest.raises(ConfigError, match="empty string"):
        check_output_path("")


# ----------------------------------------------------------------------------- probe 16


def test_json_is_strict_and_files_are_readable_by_others(tmp_path):
    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy
    from training.evaluation import write_json

    old = os.umask(0o022)
    try:
        path = write_json({"speedup_vs_high": math.nan, "x": [math.inf, 1.0]}, tmp_path / "e.json")
        data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
        assert data == {"speedup_vs_high": None, "x": [None, 1.0]}
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        cfg = RouterConfig(embed_dim=8, max_len=4, d_model=8, n_layers=1, n_heads=2, n_tiers=2)
        ckpt = TransformerRouterPolicy(TransformerRouter(cfg)).save(tmp_path / "r.pt")
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o644
        os.umask(0o077)  # a private umask is respected
        private = atomic_write_bytes(tmp_path / "p.bin", b"1")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize("fails", ["fdopen", "replace"])
def test_an_atomic_write_that_fails_leaves_neither_file_nor_descriptor(
    tmp_path, monkeypatch, fails
):
    (tmp_path / "out.bin").write_bytes(b"old")
    fds_before = set(os.listdir("/proc/self/fd"))

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(f"precision_gym.io.os.{fails}", broken)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(tmp_path / "out.bin", b"new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == b"old"  # the previous file is untouched
    assert set(os.listdir("/proc/self/fd")) == fds_before
