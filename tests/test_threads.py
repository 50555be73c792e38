"""Per-process torch thread hygiene (precision_gym.threads)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from precision_gym import threads
from precision_gym.error import ConfigError


def _run(code: str, **env: str) -> str:
    import os

    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=True,
    )
    return proc.stdout.strip()


def test_default_is_one_thread_and_env_var_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.default_torch_threads() == 1
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.default_torch_threads() == 3
    monkeypatch.setenv(threads.ENV_VAR, "auto")
    assert threads.default_torch_threads() is None


@pytest.mark.parametrize("raw", ["0", "-2", "two"])
def test_bad_env_var_names_expected_and_actual(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(threads.ENV_VAR, raw)
    with pytest.raises(ConfigError, match=r"PRECISION_GYM_TORCH_THREADS must be an integer >= 1"):
        threads.default_torch_threads()


def test_bad_count_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"num_threads must be an integer >= 1 or None, got 0"):
        threads.configure_torch_threads(0)


def test_encoder_sets_one_thread_per_process() -> None:
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from precision_gym.embedding import SentenceEncoder\n"
        "SentenceEncoder().encode(['hello'])\n"
        "print(torch.get_num_threads())"
    )
    assert _run(code, **{threads.ENV_VAR: "1"}) == "1"


def test_explicit_choice_survives_library_default() -> None:
    code = (
        "import torch\n"
        "from precision_gym.threads import configure_torch_threads\n"
        "configure_torch_threads(2)\n"
        "from precision_gym.embedding import SentenceEncoder\n"
        "SentenceEncoder().encode(['hello'])\n"
        "print(torch.get_num_threads())"
    )
    assert _run(code, **{threads.ENV_VAR: "1"}) == "2"
