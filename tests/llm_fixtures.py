"""Pytest plugin: a tiny random Qwen3 model built offline, its quantized copies, and a CPU
vLLM server that tests start and stop themselves.

Register it in ``tests/conftest.py`` with ``pytest_plugins = ["tests.llm_fixtures"]`` (or
``["llm_fixtures"]`` when ``tests`` is on ``sys.path`` rather than a package).

Fixtures
--------
``tiny_qwen3_dir`` (session)
    A random ``Qwen3ForCausalLM`` (hidden 128, 2 layers, 4 heads of dim 32, 2 KV heads) with a
    byte-level BPE tokenizer trained on ALFWorld-style text and a ChatML chat template,
    saved with ``save_pretrained`` (bf16 safetensors). Built in about a second, no network.
``tiny_qwen3_gptq_dir`` (session)
    Its GPTQ int4 (group 64, sym) checkpoint, from :func:`precision_gym.quantization.quantize_checkpoint`.
``vllm_python`` (session)
    The python of the vLLM CPU venv (``$PRECISION_GYM_VLLM_PYTHON``, else
    ``~/.cache/precision-gym/vllm-venv/bin/python``); skips when absent.
``vllm_server`` (session)
    A running vLLM OpenAI-compatible server on ``tiny_qwen3_dir`` (127.0.0.1, a free port).
``vllm_server_factory`` (function)
    ``start(model_dir, name=...) -> VLLMServer``; every server it started is stopped at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from precision_gym.serving import (  # noqa: F401  (re-exported for the tests)
    CHATML_TEMPLATE,
    DEFAULT_VLLM_PYTHON,
    FEWSHOT_JSON,
    REPO,
    SPECIAL_TOKENS,
    VLLMServer,
    alfworld_corpus,
    build_tiny_qwen3,
    build_tokenizer,
    free_port,
)

ALFWORLD_DATA = (
    Path(os.environ.get("ALFWORLD_DATA", REPO.parent / "shared" / "alfworld")) / "json_2.1.1"
)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny_qwen3_gptq_dir(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from precision_gym.quantization import quantize_checkpoint

    return quantize_checkpoint(tiny_qwen3_dir, 4, 64, tmp_path_factory.mktemp("tiny-qwen3-gptq"))


def venv_python_or_skip(env_var: str, default: Path, what: str, setup_script: str) -> Path:
    """The python of a separate venv (``$env_var``, else ``default``); skip, saying how to
    build it, when absent."""
    env = os.environ.get(env_var)
    path = Path(env) if env else default
    if not path.is_file():
        pytest.skip(f"{what} venv not found at {path} (set {env_var} or run {setup_script})")
    return path


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    return venv_python_or_skip(
        "PRECISION_GYM_VLLM_PYTHON", DEFAULT_VLLM_PYTHON, "vLLM CPU", "scripts/setup_vllm_cpu.sh"
    )


@pytest.fixture(scope="session")
def _vllm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[VLLMServer]]:
    servers: list[VLLMServer] = []
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def vllm_server(
    vllm_python: Path,
    tiny_qwen3_dir: Path,
    _vllm_servers: list[VLLMServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> VLLMServer:
    log = tmp_path_factory.mktemp("vllm-logs") / "bf16.log"
    server = VLLMServer(vllm_python, tiny_qwen3_dir, log, name="tiny-bf16")
    _vllm_servers.append(server)
    return server.start()


@pytest.fixture
def vllm_server_factory(vllm_python: Path, tmp_path: Path) -> Iterator[Callable[..., VLLMServer]]:
    started: list[VLLMServer] = []

    def start(model_dir: Path, name: str = "tiny", extra_args: tuple[str, ...] = ()) -> VLLMServer:
        server = VLLMServer(
            vllm_python, model_dir, tmp_path / f"{name}.log", name=name, extra_args=extra_args
        )
        started.append(server)
        return server.start()

    yield start
    for s in started:
        s.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vllm: starts CPU vLLM servers (needs scripts/setup_vllm_cpu.sh's venv)"
    )
