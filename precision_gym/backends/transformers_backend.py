"""In-process Hugging Face causal LM as one precision tier (bf16, or int4/int3 fake-quant).

:class:`TransformersBackend` loads a checkpoint with ``transformers`` and, for the ``int4`` /
``int3`` tiers, rounds every ``nn.Linear`` weight except ``lm_head`` group-wise to 4/3-bit
integers (round-to-nearest, asymmetric min/max per group; see
:mod:`precision_gym.quantization`) and keeps it de-quantized in the compute dtype. This is
*fake* quantization: it reproduces the numerics of weight-only int4/int3 but not their speed
(the matmuls still run in the compute dtype), so its wall times measure the bf16 kernels;
serve a GPTQ checkpoint with vLLM for real int4 latency.

The ALFWorld prompt is append-only, so consecutive calls share long prefixes: the backend
keeps the KV cache (``past_key_values``) of recently seen prompts and, for a new prompt,
reuses the entry with the longest common token prefix (up to ``max_cache_entries`` entries),
running the model only on the new suffix. Results equal the no-cache path (tested).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from precision_gym.backends.base import (
    ActionScore,
    CallRecord,
    Generation,
    GenerationRequest,
    Prompt,
    SamplingParams,
)
from precision_gym.error import BackendError, CheckpointError, ConfigError
from precision_gym.quantization import fake_quantize_model_

__all__ = ["PRECISION_BITS", "TransformersBackend"]

log = logging.getLogger(__name__)

#: weight bits of each precision name (None: unquantized)
PRECISION_BITS: dict[str, int | None] = {"bf16": None, "int4": 4, "int3": 3}


@dataclass
class _CacheEntry:
    ids: list[int]
    cache: Any  # transformers DynamicCache holding exactly len(ids) positions


def _crop_to(cache: Any, n: int) -> None:
    """Shorten a DynamicCache to its first ``n`` positions (negative ``crop`` removes tokens
    in transformers 4.x and 5.x alike)."""
    extra = cache.get_seq_length() - n
    if extra > 0:
        cache.crop(-extra)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersBackend:
    """One precision tier served in-process by a Hugging Face causal LM.

    Parameters
    ----------
    model_dir:
        A ``save_pretrained`` directory (or, with ``gguf_file``, the folder holding the GGUF).
    precision:
        ``"bf16"`` (weights as loaded), ``"int4"`` or ``"int3"`` (group-wise RTN fake-quant of
        every Linear except ``lm_head``).
    group_size:
        Input features per quantization group (64 or 128 in the paper's setting; -1: per row).
    device, dtype:
        Where and in which dtype to run (default bf16; pass ``torch.float32`` for CPU tests
        that need bit-stable results).
    symmetric, method:
        Quantizer variant: asymmetric RTN by default; ``symmetric=True`` reproduces the
        GPTQ (``sym=true``) checkpoints of :func:`~precision_gym.quantization.quantize_checkpoint`
        exactly; ``method="hqq"`` uses HQQ when the optional ``hqq`` package is installed.
    prefix_cache, max_cache_entries:
        Reuse of the KV cache across prompts sharing a token prefix.
    """

    simulated = False

    def __init__(
        self,
        model_dir: str | Path,
        precision: str = "bf16",
        group_size: int = 128,
        device: str = "cpu",
        *,
        name: str | None = None,
        dtype: torch.dtype = torch.bfloat16,
        symmetric: bool = False,
        method: str = "rtn",
        prefix_cache: bool = True,
        max_cache_entries: int = 4,
        gguf_file: str | None = None,
        num_threads: int | None = None,
    ) -> None:
        if precision not in PRECISION_BITS:
            raise ConfigError(
                f"precision must be one of {sorted(PRECISION_BITS)}; got {precision!r}"
            )
        if max_cache_entries < 1:
            raise ConfigError(f"max_cache_entries must be >= 1; got {max_cache_entries}")
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover
            raise ConfigError("TransformersBackend needs transformers (the 'llm' extra)") from exc
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise CheckpointError(f"expected a model directory; got {model_dir} (not found)")
        if num_threads:
            torch.set_num_threads(num_threads)
        self.model_dir = model_dir
        self.precision = precision
        self.group_size = group_size
        self.device = torch.device(device)
        self.dtype = dtype
        bits = PRECISION_BITS[precision]
        suffix = f"-g{group_size}" if bits else ""
        self.name = name or f"{precision}{suffix}"
        kwargs: dict[str, Any] = {"dtype": dtype}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), **({"gguf_file": gguf_file} if gguf_file else {})
        )
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
        self.model.to(self.device).eval()
        self.quantized_modules: list[str] = []
        if bits is not None:
            self.quantized_modules = fake_quantize_model_(
                self.model, bits, group_size, symmetric=symmetric, method=method
            )
        self.eos_ids = self._eos_ids()
        self.prefix_cache = prefix_cache
        self.max_cache_entries = max_cache_entries
        self._entries: list[_CacheEntry] = []
        self._lock = threading.Lock()
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(0)
        #: one record per call (wall time, completion tokens, cached prompt tokens)
        self.call_log: list[CallRecord] = []

    # ------------------------------------------------------------------ tokenization
    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (
            self.tokenizer.eos_token_id,
            getattr(self.model.generation_config, "eos_token_id", None),
        ):
            if isinstance(src, int):
                ids.add(src)
            elif isinstance(src, (list, tuple)):
                ids.update(int(i) for i in src)
        return ids

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt: plain text as the completion API would tokenize it (with the
        tokenizer's special tokens), message lists through the chat template with the
        generation prompt appended."""
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        if not isinstance(prompt, list):
            raise ConfigError(f"prompt must be str or a list of messages; got {type(prompt)}")
        text = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_action(self, action: str) -> list[int]:
        return list(self.tokenizer(action, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ KV cache reuse
    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # transformers < 4.56 takes no config
            return DynamicCache()

    def _acquire(self, ids: list[int], limit: int) -> tuple[Any, int]:
        """A cache holding the first ``n <= limit`` tokens of ``ids``, and ``n``."""
        if not self.prefix_cache or not self._entries:
            return self._new_cache(), 0
        best_i, best_n = -1, 0
        for i, entry in enumerate(self._entries):
            n = _common_prefix(entry.ids, ids)
            if n > best_n:
                best_i, best_n = i, n
        n = min(best_n, limit)
        if n < 1:
            return self._new_cache(), 0
        entry = self._entries[best_i]
        if best_n == len(entry.ids):
            # pure extension of that prompt (the append-only case): take it over
            self._entries.pop(best_i)
            cache = entry.cache
        else:
            cache = copy.deepcopy(entry.cache)  # diverging prompts: keep the original
        _crop_to(cache, n)
        return cache, n

    def _release(self, ids: list[int], cache: Any) -> None:
        if not self.prefix_cache:
            return
        if not getattr(cache, "is_croppable", True):
            return  # sliding-window / recurrent caches cannot be cut back to the prompt
        _crop_to(cache, len(ids))
        self._entries.append(_CacheEntry(list(ids), cache))
        while len(self._entries) > self.max_cache_entries:
            self._entries.pop(0)

    def clear_cache(self) -> None:
        """Drop every cached prefix."""
        with self._lock:
            self._entries.clear()

    @torch.no_grad()
    def _run(self, ids: list[int], cache: Any) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=x, past_key_values=cache, use_cache=True)
        return out.logits[0].float()

    # ------------------------------------------------------------------ generation
    def _pick(self, logits: torch.Tensor, params: SamplingParams, gen: torch.Generator) -> int:
        if params.temperature <= 0.0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, 0) - sorted_p < params.top_p
            mask = torch.zeros_like(probs, dtype=torch.bool)
            mask[order[keep]] = True
            probs = torch.where(mask, probs, torch.zeros_like(probs))
            probs = probs / probs.sum()
        return int(torch.multinomial(probs.cpu(), 1, generator=gen))

    def _generate_one(self, request: GenerationRequest) -> Generation:
        t0 = time.perf_counter()
        params = request.params
        ids = self.encode_prompt(request.prompt)
        if not ids:
            raise BackendError(
                "expected a non-empty prompt; got one that tokenizes to 0 tokens", retryable=False
            )
        gen = self._generator
        if params.seed is not None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(params.seed)
        cache, reused = self._acquire(ids, len(ids) - 1)
        try:
            logits = self._run(ids[reused:], cache)[-1]
            out: list[int] = []
            text = ""
            finish = "length"
            while len(out) < params.max_tokens:
                tok = self._pick(logits, params, gen)
                out.append(tok)
                if tok in self.eos_ids:
                    finish = "stop"
                    break
                text = self.tokenizer.decode(out, skip_special_tokens=True)
                cut = min(
                    (i for i in (text.find(s) for s in params.stop if s) if i >= 0), default=-1
                )
                if cut >= 0:
                    text = text[:cut]
                    finish = "stop"
                    break
                if len(out) < params.max_tokens:
                    logits = self._run([tok], cache)[-1]
            else:
                text = self.tokenizer.decode(out, skip_special_tokens=True)
            if finish == "stop" and out and out[-1] in self.eos_ids:
                text = self.tokenizer.decode(out[:-1], skip_special_tokens=True)
        except RuntimeError as exc:  # torch faults (OOM, shape errors) become backend faults
            self._entries.clear()
            raise BackendError(f"{self.name}: model forward failed: {exc}") from exc
        self._release(ids, cache)
        wall = time.perf_counter() - t0
        self.call_log.append(CallRecord(self.name, "generate", wall, len(out), len(ids), reused))
        return Generation(
            text=text,
            completion_tokens=len(out),
            wall_time_s=wall,
            prompt_tokens=len(ids),
            meta={"cached_prompt_tokens": reused, "finish_reason": finish, "backend": self.name},
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one completion per request, one request after another (stop strings are
        cut from the text, as the OpenAI API does); wall time is measured per request."""
        with self._lock:
            return [self._generate_one(r) for r in requests]

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, prompt: Prompt, action: str) -> ActionScore:
        """Teacher-force ``action`` after ``prompt``: full-vocabulary log-probs per action token
        (``full_logprobs``: float32 array ``[n_tokens, vocab]``)."""
        t0 = time.perf_counter()
        with self._lock:
            p_ids = self.encode_prompt(prompt)
            a_ids = self.encode_action(action)
            if not p_ids:
                raise BackendError(
                    "expected a non-empty prompt to score; got 0 tokens", retryable=False
                )
            if not a_ids:
                return ActionScore(
                    tokens=[],
                    token_logprobs=[],
                    token_ids=[],
                    full_logprobs=np.zeros((0, 0), np.float32),
                )
            cache, reused = self._acquire(p_ids, len(p_ids) - 1)
            feed = (p_ids + a_ids[:-1])[reused:]
            try:
                logits = self._run(feed, cache)
            except RuntimeError as exc:
                self._entries.clear()
                raise BackendError(f"{self.name}: model forward failed: {exc}") from exc
            start = len(p_ids) - 1 - reused
            lp = torch.log_softmax(logits[start : start + len(a_ids)], dim=-1)
            self._release(p_ids, cache)
        idx = torch.tensor(a_ids)
        token_lp = lp[torch.arange(len(a_ids)), idx].tolist()
        wall = time.perf_counter() - t0
        self.call_log.append(CallRecord(self.name, "score", wall, 0, len(p_ids), reused))
        return ActionScore(
            tokens=[self.tokenizer.decode([i]) for i in a_ids],
            token_logprobs=[float(x) for x in token_lp],
            logprobs=None,
            topk_truncated=False,
            full_logprobs=lp.cpu().numpy().astype(np.float32),
            token_ids=a_ids,
            meta={
                "prompt_tokens": len(p_ids),
                "cached_prompt_tokens": reused,
                "wall_time_s": wall,
                "route": "full-logits",
            },
        )

    def close(self) -> None:
        self.clear_cache()

    def __repr__(self) -> str:
        return f"TransformersBackend({str(self.model_dir)!r}, precision={self.precision!r})"
