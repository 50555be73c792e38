"""``precision-gym quantize``: write a weight-only quantized copy of a local checkpoint.

4-bit writes a GPTQ-format checkpoint that vLLM serves (CPU and GPU); 3-bit writes weights
rounded to int3 and stored back in bf16 (a fake-quant checkpoint, as the paper's W3). On GPU
machines, llmcompressor's AWQ/GPTQ oneshot pipelines are the calibrated route (see
``precision_gym.quantization``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from training.cli.common import add_command

__all__ = ["add_parser", "cmd_quantize"]


def cmd_quantize(args: argparse.Namespace) -> int:
    """weight-only int4 (GPTQ format) / int3 copy of a model"""
    from precision_gym.quantization import quantize_checkpoint  # torch: only when it runs

    t0 = time.perf_counter()
    out = quantize_checkpoint(
        args.model, args.bits, args.group, args.out, method=args.method, overwrite=args.overwrite
    )
    kind = "GPTQ int4 (vLLM-servable)" if args.bits == 4 else f"fake-quant int{args.bits} in bf16"
    print(f"wrote {kind} checkpoint of {args.model} to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def add_parser(sub: Any) -> None:
    p = add_command(sub, "quantize", cmd_quantize)
    p.add_argument("--model", required=True, help="local Hugging Face model folder")
    p.add_argument("--bits", type=int, choices=(3, 4), required=True, help="weight bits")
    p.add_argument("--group", type=int, default=128, help="quantization group size (64 or 128)")
    p.add_argument("--out", required=True, help="output folder (new or empty; not --model)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the contents of a non-empty --out"
    )
    p.add_argument(
        "--method",
        default="rtn",
        choices=("rtn", "hqq"),
        help="rounding: round-to-nearest, or HQQ (optional package, 3-bit only)",
    )
