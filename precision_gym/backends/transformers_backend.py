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

A ``generate`` call with several requests runs them as **one padded batch** (left padding,
attention mask, per-row positions; per-request sampling parameters, ``max_tokens`` and stop
strings), without the prefix cache: one forward per generated token for the whole batch
instead of one per request. Greedy outputs equal the one-by-one outputs (tested in float32).
Each request's ``wall_time_s`` is the time from the start of the batch to its own last token,
as the HTTP backend reports each of its in-flight requests. ``max_batch_size`` splits larger
calls; ``max_batch_size=1`` answers requests one by one, with the prefix cache.
"""

from __future__ import annotations

import copy
import logging
import math
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


class _Decoding:
    """One request's decoding: the tokens drawn so far, the text (stop strings cut, as the
    OpenAI API does; an end-of-sequence token is not shown) and the finish reason."""

    def __init__(
        self,
        params: SamplingParams,
        gen: torch.Generator,
        eos_ids: set[int],
        decode: Any,
    ) -> None:
        self.params, self.gen, self._eos_ids, self._decode = params, gen, eos_ids, decode
        self.out: list[int] = []
        self.text = ""
        self.finish = "length"
        self.done = params.max_tokens <= 0

    def push(self, tok: int) -> None:
        """Append one drawn token; sets ``done`` on an end token, a stop string or the limit."""
        self.out.append(tok)
        if tok in self._eos_ids:
            self.text, self.finish, self.done = self._decode(self.out[:-1]), "stop", True
            return
        self.text = self._decode(self.out)
        cuts = [i for i in (self.text.find(s) for s in self.params.stop if s) if i >= 0]
        if cuts:
            self.text, self.finish, self.done = self.text[: min(cuts)], "stop", True
        elif len(self.out) >= self.params.max_tokens:
            self.done = True


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
        Reuse of the KV cache across prompts sharing a token prefix (single-request calls).
    max_batch_size:
        Most requests per padded batch (``None``: a whole ``generate`` call in one batch; ``1``:
        one request after another, each with the prefix cache).
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
        max_batch_size: int | None = None,
    ) -> None:
        if precision not in PRECISION_BITS:
            raise ConfigError(
                f"precision must be one of {sorted(PRECISION_BITS)}; got {precision!r}"
            )
        if max_cache_entries < 1:
            raise ConfigError(f"max_cache_entries must be >= 1; got {max_cache_entries}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be None or >= 1; got {max_batch_size}")
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
        self.max_batch_size = max_batch_size
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

    def _pad_id(self) -> int:
        """The token that left-pads a batch (masked out, so any id would do)."""
        for pid in (self.tokenizer.pad_token_id, self.model.config.pad_token_id):
            if isinstance(pid, int):
                return pid
        return min(self.eos_ids) if self.eos_ids else 0

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

    def _decoding(self, params: SamplingParams) -> _Decoding:
        gen = self._generator
        if params.seed is not None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(params.seed)
        return _Decoding(
            params,
            gen,
            self.eos_ids,
            lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
        )

    def _prompt_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        ids = [self.encode_prompt(r.prompt) for r in requests]
        empty = [i for i, x in enumerate(ids) if not x]
        if empty:
            raise BackendError(
                f"expected a non-empty prompt; got one that tokenizes to 0 tokens "
                f"(request {empty[0]} of {len(ids)})",
                retryable=False,
            )
        return ids

    def _result(self, row: _Decoding, ids: list[int], reused: int, wall: float) -> Generation:
        self.call_log.append(
            CallRecord(self.name, "generate", wall, len(row.out), len(ids), reused)
        )
        return Generation(
            text=row.text,
            completion_tokens=len(row.out),
            wall_time_s=wall,
            prompt_tokens=len(ids),
            meta={
                "cached_prompt_tokens": reused,
                "finish_reason": row.finish,
                "backend": self.name,
            },
        )

    def _generate_one(self, request: GenerationRequest) -> Generation:
        t0 = time.perf_counter()
        (ids,) = self._prompt_ids([request])
        row = self._decoding(request.params)
        cache, reused = self._acquire(ids, len(ids) - 1)
        try:
            logits = self._run(ids[reused:], cache)[-1]
            while not row.done:
                row.push(self._pick(logits, row.params, row.gen))
                if not row.done:
                    logits = self._run([row.out[-1]], cache)[-1]
        except RuntimeError as exc:  # torch faults (OOM, shape errors) become backend faults
            self._entries.clear()
            raise BackendError(f"{self.name}: model forward failed: {exc}") from exc
        self._release(ids, cache)
        return self._result(row, ids, reused, time.perf_counter() - t0)

    @torch.no_grad()
    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """One padded batch: left padding, an attention mask over pads, positions counted
        from each prompt's first real token; finished rows are fed pads until all are done."""
        t0 = time.perf_counter()
        prompts = self._prompt_ids(requests)
        rows = [self._decoding(r.params) for r in requests]
        walls = [0.0 if row.done else math.nan for row in rows]
        width, pad = max(len(p) for p in prompts), self._pad_id()
        x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device
        )
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._new_cache()
        try:
            while not all(row.done for row in rows):
                out = self.model(
                    input_ids=x,
                    attention_mask=mask,
                    position_ids=pos,
                    past_key_values=cache,
                    use_cache=True,
                )
                logits = out.logits[:, -1].float()
                for i, row in enumerate(rows):
                    if not row.done:
                        row.push(self._pick(logits[i], row.params, row.gen))
                        if row.done:
                            walls[i] = time.perf_counter() - t0
                x = torch.tensor(
                    [[row.out[-1] if row.out else pad] for row in rows], device=self.device
                )
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                pos = pos[:, -1:] + 1
        except RuntimeError as exc:  # torch faults (OOM, shape errors) become backend faults
            raise BackendError(f"{self.name}: model forward failed: {exc}") from exc
        return [self._result(r, p, 0, w) for r, p, w in zip(rows, prompts, walls, strict=True)]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one completion per request: several requests as one padded batch (split
        by ``max_batch_size``), a single one with the prefix cache. Stop strings are cut from
        the text, as the OpenAI API does."""
        size = self.max_batch_size or max(len(requests), 1)
        out: list[Generation] = []
        with self._lock:
            for i in range(0, len(requests), size):
                chunk = requests[i : i + size]
                if len(chunk) == 1:
                    out.append(self._generate_one(chunk[0]))
                else:
                    out.extend(self._generate_batch(chunk))
        return out

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
