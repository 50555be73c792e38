"""RTN fake-quant on known values, GPTQ packing round trip, checkpoint writing."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from precision_gym.error import CheckpointError, ConfigError
from precision_gym.quantization import (
    fake_quantize_model_,
    pack_gptq,
    quantize_checkpoint,
    quantize_rtn,
    rtn_quantize_params,
    unpack_gptq,
)


def test_rtn_known_values_asymmetric():
    # scale (2 - -1) / 3 = 1, zero round(1 / 1) = 1; 0.5 rounds half-to-even to 0
    w = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    assert quantize_rtn(w, bits=2, group_size=4).tolist() == [[-1.0, 0.0, 0.0, 2.0]]
    q, scale, zero = rtn_quantize_params(w, 2, 4)
    assert q.tolist() == [[0, 1, 1, 3]]
    assert scale.tolist() == [[1.0]] and zero.tolist() == [[1]]


def test_rtn_exact_on_grid_and_groups_independent():
    # two groups of 4 with different ranges: both lie on their 4-bit grids -> exact
    w = torch.tensor([[0.0, 1.0, 2.0, 15.0, -0.3, 0.0, 0.3, 4.2]])
    out = quantize_rtn(w, bits=4, group_size=4)
    assert out[0, :4].tolist() == [0.0, 1.0, 2.0, 15.0]
    assert torch.allclose(out[0, 4:], torch.tensor([-0.3, 0.0, 0.3, 4.2]), atol=1e-6)


def test_rtn_constant_groups_are_reproduced():
    w = torch.tensor([[2.5, 2.5], [-0.7, -0.7], [0.0, 0.0]])
    assert torch.equal(quantize_rtn(w, bits=3, group_size=2), w)


def test_rtn_symmetric_known_values():
    # absmax 7.5 -> scale 2*7.5/15 = 1, zero 8; 7.5 -> round(7.5)=8 -> q 16 clamps to 15 -> 7
    w = torch.tensor([[-7.5, -1.0, 0.0, 7.5]])
    assert quantize_rtn(w, 4, 4, symmetric=True).tolist() == [[-8.0, -1.0, 0.0, 7.0]]


def test_rtn_error_bounded_by_half_step():
    torch.manual_seed(0)
    w = torch.randn(16, 128)
    for bits in (3, 4):
        q, scale, _ = rtn_quantize_params(w, bits, 64)
        err = (quantize_rtn(w, bits, 64) - w).abs().reshape(16, 2, 64)
        assert (err <= scale[..., None] / 2 + 1e-6).all()
        assert q.min() >= 0 and q.max() <= 2**bits - 1
    # fewer bits -> more error
    e3 = (quantize_rtn(w, 3, 64) - w).pow(2).mean()
    e4 = (quantize_rtn(w, 4, 64) - w).pow(2).mean()
    assert e3 > e4 > 0


def test_rtn_keeps_dtype_and_rejects_bad_groups():
    w = torch.randn(4, 64, dtype=torch.bfloat16)
    assert quantize_rtn(w, 4, 32).dtype == torch.bfloat16
    assert quantize_rtn(w, 4, -1).shape == (4, 64)
    with pytest.raises(
        ConfigError,
        match="group_size must divide the input features; got group_size 48 for 64 input features",
    ):
        quantize_rtn(w, 4, 48)
    with pytest.raises(ConfigError, match=r"bits must be an integer in \[2, 8\]; got 1"):
        quantize_rtn(w, 1, 32)
    with pytest.raises(ConfigError, match=r"weight must be 2-D \[out, in\]; got shape \(64,\)"):
        quantize_rtn(w[0], 4, 32)


def test_gptq_pack_known_word_and_round_trip():
    # one output row of 8 inputs 0..7: the first qweight word holds nibbles 0..7 low->high
    q = torch.arange(8).reshape(1, 8).repeat(8, 1)  # [out=8, in=8]
    zero = torch.full((8, 1), 8)
    scale = torch.ones(8, 1)
    packed = pack_gptq(q, zero, scale, bits=4, group_size=8)
    assert packed["qweight"].shape == (1, 8) and packed["qweight"].dtype == torch.int32
    assert packed["qweight"][0, 0].item() == 0x76543210
    assert packed["qzeros"].tolist() == [[0x77777777]]  # zero - 1 = 7 in every nibble
    assert packed["g_idx"].tolist() == [0] * 8
    torch.manual_seed(1)
    w = torch.randn(16, 128)
    q, scale, zero = rtn_quantize_params(w, 4, 64, symmetric=True)
    p = pack_gptq(q, zero, scale, 4, 64)
    deq = unpack_gptq(p["qweight"], p["qzeros"], p["scales"], p["g_idx"], 4)
    ref = quantize_rtn(w, 4, 64, symmetric=True)
    assert torch.allclose(deq, ref, rtol=1e-3, atol=1e-4)  # fp16 scales
    # asymmetric codes with zero >= 1 survive the v1 zero-1 convention too
    q, scale, zero = rtn_quantize_params(w, 4, 64)
    zero = zero.clamp(min=1)
    p = pack_gptq(q, zero, scale, 4, 64)
    deq = unpack_gptq(p["qweight"], p["qzeros"], p["scales"], p["g_idx"], 4)
    assert torch.allclose(
        deq,
        (q - zero.repeat_interleave(64, 1)) * scale.repeat_interleave(64, 1),
        rtol=1e-3,
        atol=1e-4,
    )


def test_fake_quantize_model_skips_lm_head():
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(64, 32))
    model.add_module("lm_head", torch.nn.Linear(32, 16))
    head = model.lm_head.weight.detach().clone()
    names = fake_quantize_model_(model, 4, 32)
    assert names == ["proj"]
    assert torch.equal(model.lm_head.weight, head)
    assert model.proj.weight.unique().numel() <= 32 * 2 * 16


def test_quantize_checkpoint_gptq_layout(tiny_qwen3_dir, tmp_path):
    out = quantize_checkpoint(tiny_qwen3_dir, 4, 64, tmp_path / "w4")
    cfg = json.loads((out / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert (qc["quant_method"], qc["bits"], qc["group_size"], qc["desc_act"], qc["sym"]) == (
        "gptq",
        4,
        64,
        False,
        True,
    )
    tensors = load_file(str(out / "model.safetensors"))
    qw = tensors["model.layers.0.self_attn.q_proj.qweight"]
    assert qw.dtype == torch.int32 and qw.shape == (128 // 8, 128)
    assert tensors["model.layers.0.mlp.down_proj.qzeros"].shape == (256 // 64, 128 // 8)
    assert tensors["model.layers.0.mlp.down_proj.scales"].dtype == torch.float16
    assert "lm_head.weight" in tensors and "model.layers.0.self_attn.q_proj.weight" not in tensors
    assert (out / "tokenizer.json").is_file()
    # the packed weights are the symmetric RTN of the bf16 weights
    ref = load_file(str(tiny_qwen3_dir / "model.safetensors"))
    w = ref["model.layers.1.self_attn.o_proj.weight"]
    pre = "model.layers.1.self_attn.o_proj."
    deq = unpack_gptq(
        tensors[pre + "qweight"],
        tensors[pre + "qzeros"],
        tensors[pre + "scales"],
        tensors[pre + "g_idx"],
        4,
    )
    assert torch.allclose(deq, quantize_rtn(w.float(), 4, 64, symmetric=True), atol=2e-3)


def test_quantize_checkpoint_w3_fake_quant(tiny_qwen3_dir, tmp_path):
    out = quantize_checkpoint(tiny_qwen3_dir, 3, 64, tmp_path / "w3")
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["precision_gym_fake_quant"]["bits"] == 3
    t = load_file(str(out / "model.safetensors"))
    w = t["model.layers.0.mlp.up_proj.weight"]
    assert w.dtype == torch.bfloat16
    # at most 2**3 distinct levels per group of 64
    assert max(len(set(g.tolist())) for g in w.float().reshape(-1, 64)) <= 8
    ref = load_file(str(tiny_qwen3_dir / "model.safetensors"))
    assert torch.equal(t["lm_head.weight"], ref["lm_head.weight"])


def test_quantize_checkpoint_errors(tiny_qwen3_dir, tmp_path):
    with pytest.raises(ConfigError, match="GPTQ checkpoints are written for bits 4 or 8"):
        quantize_checkpoint(tiny_qwen3_dir, 3, 64, tmp_path / "x", fmt="gptq")
    with pytest.raises(CheckpointError, match="expected a Hugging Face model directory"):
        quantize_checkpoint(tmp_path / "missing", 4, 64, tmp_path / "y")


def test_hqq_is_optional(monkeypatch):
    w = torch.randn(8, 64)
    monkeypatch.setitem(sys.modules, "hqq.core.quantize", None)
    model = torch.nn.Sequential(torch.nn.Linear(64, 8))
    with pytest.raises(ConfigError, match=r"method 'hqq' needs the optional package hqq"):
        fake_quantize_model_(model, 4, 64, method="hqq")
    with pytest.raises(ConfigError, match=r"method must be 'rtn' or 'hqq'; got 'awq'"):
        fake_quantize_model_(model, 4, 64, method="awq")
    assert w.shape == (8, 64)


def test_hqq_fake_quant_when_installed():
    pytest.importorskip("hqq.core.quantize")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 64))
    w = model[0].weight.detach().clone()
    fake_quantize_model_(model, 4, 64, method="hqq")
    got = model[0].weight.detach()
    assert max(len(set(g.tolist())) for g in got.reshape(-1, 64)) <= 16
    # HQQ's optimised zeros/scales beat plain RTN on the weight error
    assert (got - w).pow(2).mean() <= (quantize_rtn(w, 4, 64) - w).pow(2).mean()


def test_quantize_cli_writes_a_gptq_checkpoint(tiny_qwen3_dir, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "w4"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "quantize",
            "--model",
            str(tiny_qwen3_dir),
            "--bits",
            "4",
            "--group",
            "64",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GPTQ int4" in proc.stdout
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["quant_method"] == "gptq" and qcfg["bits"] == 4 and qcfg["group_size"] == 64
