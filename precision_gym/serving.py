"""Serving helpers: a vLLM OpenAI-compatible server started, health-checked and stopped from
Python, and the tiny random Qwen3 model the tests and benchmarks serve (built offline in about
a second: no hub, no download).

``VLLMServer(python, model_dir, log_path).start()`` runs ``vllm.entrypoints.openai.api_server``
as a subprocess on 127.0.0.1 with CPU settings (vLLM lives in its own venv:
``scripts/setup_vllm_cpu.sh``; ``python`` is that venv's interpreter) and waits for ``/health``;
``stop()`` ends its process group. :func:`build_tiny_qwen3` writes a random
``Qwen3ForCausalLM`` (hidden 128, 2 layers) with a byte-level BPE tokenizer trained on
ALFWorld-style text: a model for plumbing and speed tests, never for results.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from precision_gym.threads import available_cores

__all__ = [
    "DEFAULT_VLLM_PYTHON",
    "VLLMServer",
    "alfworld_corpus",
    "build_tiny_qwen3",
    "build_tokenizer",
    "free_port",
    "vllm_python",
]

REPO = Path(__file__).resolve().parent.parent
FEWSHOT_JSON = Path(__file__).resolve().parent / "prompting" / "alfworld_fewshot.json"
DEFAULT_VLLM_PYTHON = Path.home() / ".cache" / "precision-gym" / "vllm-venv" / "bin" / "python"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _alfworld_games_dir() -> Path:
    root = os.environ.get("ALFWORLD_DATA", str(REPO.parent / "shared" / "alfworld"))
    return Path(root) / "json_2.1.1"


def vllm_python() -> Path | None:
    """The vLLM venv's python (``$PRECISION_GYM_VLLM_PYTHON``, else the setup script's), or
    None when it is absent."""
    env = os.environ.get("PRECISION_GYM_VLLM_PYTHON")
    path = Path(env) if env else DEFAULT_VLLM_PYTHON
    return path if path.is_file() else None


_FALLBACK_TEXT = [
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, "
    "a countertop 1, a drawer 1, a fridge 1, a microwave 1, a sinkbasin 1, and a toaster 1.",
    "Your task is to: put a clean mug in coffeemachine.",
    "> go to countertop 1\nYou arrive at countertop 1. On the countertop 1, you see a mug 1.",
    "> take mug 1 from countertop 1\nYou pick up the mug 1 from the countertop 1.",
    "> think: To solve the task, I need to find and take a mug, then clean it.\nOK.",
    "Nothing happens.",
]


def alfworld_corpus(max_games: int = 120) -> list[str]:
    """A few KB of ALFWorld-style text: the committed few-shot examples plus train-split
    walkthrough commands (a fixed fallback when the game files are absent)."""
    texts = list(_FALLBACK_TEXT)
    if FEWSHOT_JSON.is_file():
        data = json.loads(FEWSHOT_JSON.read_text())
        texts += [ex["text"] for ex in data["examples"].values()]
    games = sorted((_alfworld_games_dir() / "train").glob("*/*/game.tw-pddl"))[::7][:max_games]
    for path in games:
        walkthrough = json.loads(path.read_text())["walkthrough"]
        texts.append("\n".join(f"> {c}" for c in walkthrough))
    return texts


def build_tokenizer(out_dir: Path, vocab_size: int = 512) -> Any:
    """Train a byte-level BPE tokenizer on :func:`alfworld_corpus` and save it (fast
    tokenizer + ChatML template) into ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(alfworld_corpus(), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    hf.chat_template = CHATML_TEMPLATE
    hf.save_pretrained(str(out_dir))
    return hf


def build_tiny_qwen3(
    out_dir: Path, seed: int = 0, hidden_size: int = 128, initializer_range: float = 0.2
) -> Path:
    """Build and save the tiny random Qwen3 model + tokenizer into ``out_dir``.

    ``initializer_range`` is large (0.2) so the random model's next-token distributions are
    peaked rather than near-uniform: greedy decoding is then robust to float noise and
    bf16-vs-int4 KLs are clearly non-zero.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir)
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    model.save_pretrained(str(out_dir))
    return out_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """A ``vllm.entrypoints.openai.api_server`` subprocess on 127.0.0.1 (CPU settings).

    On a machine with two or more cores one core is left out of the engine's OpenMP threads
    (``VLLM_CPU_NUM_OF_RESERVED_CPU=1``, vLLM's own minimum): the API server and the client
    (the env: prompts, TextWorld, the encoder) run there. Without it the engine's threads
    spin on every core and fight the client: measured with ``benchmarks/bench_rollout.py``'s
    8 episodes one request at a time, the LLM calls took 23.5-26.6 s with no core left out
    against 8.9-9.6 s with one. ``extra_env`` overrides it.
    """

    def __init__(
        self,
        python: Path,
        model_dir: Path,
        log_path: Path,
        name: str = "tiny",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.python, self.model_dir, self.log_path, self.name = python, model_dir, log_path, name
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        #: environment variables set on top of the CPU defaults (e.g. ``VLLM_SERVER_DEV_MODE``)
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 300.0) -> VLLMServer:
        env = dict(os.environ)
        env.update(
            {
                "VLLM_HOST_IP": "127.0.0.1",
                "VLLM_LOOPBACK_IP": "127.0.0.1",
                "VLLM_CPU_NUM_OF_RESERVED_CPU": "1" if available_cores() >= 2 else "0",
                "VLLM_CPU_KVCACHE_SPACE": "2",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                **self.extra_env,
            }
        )
        cmd = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "bfloat16",
            "--max-model-len",
            "4096",
            "--max-logprobs",
            "20",
            "--enforce-eager",
            *self.extra_args,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {self.proc.returncode} while starting; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(
            f"vLLM server not healthy after {timeout_s:.0f} s; log tail:\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL to its process group): the fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
