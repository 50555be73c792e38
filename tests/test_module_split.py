"""The split modules (issue 12 part 6): old import paths still work; the shared helpers."""

from __future__ import annotations

import pytest

from precision_gym.error import ConfigError, lookup


def test_old_webshop_names_still_import():
    from precision_gym.tasks import webshop
    from precision_gym.tasks.webshop import (  # noqa: F401  (the former module's names)
        _BUY,
        _CACHE,
        SEARCH_TEMPLATE,
        SEP,
        WEBSHOP_DATA_ENV,
        WEBSHOP_FILES,
        WebShopCatalogue,
        WebShopTask,
        _parse_pricing,
        _Session,
        _tokenise,
        load_catalogue,
        parse_webshop_command,
        verify_webshop_files,
    )

    assert webshop.WebShopTask.__module__ == "precision_gym.tasks.webshop.task"
    assert _parse_pricing("$10.00 - $20.00") == ((10.0, 20.0), "$10.0 to $20.0")


def test_old_openai_backend_path_is_the_same_class():
    from precision_gym.backends.openai import OpenAIBackend as New
    from precision_gym.backends.openai_backend import MAX_OUTPUT_CHARS, OpenAIBackend

    assert OpenAIBackend is New
    assert MAX_OUTPUT_CHARS == 16_384


def test_lookup_names_what_and_the_known_names():
    table = {"b": 2, "a": 1}
    assert lookup(table, "a", "preset") == 1
    with pytest.raises(ConfigError, match=r"unknown preset 'c': expected one of \['a', 'b'\]"):
        lookup(table, "c", "preset")


def test_server_dialects():
    from precision_gym.backends.openai.dialects import tokenize_body, top_key

    assert top_key("token_id:42") == 42
    assert top_key("token_id:x") == "token_id:x"
    assert tokenize_body("llamacpp", "m", "hi", True) == {"content": "hi", "add_special": True}
    with pytest.raises(ConfigError, match=r"llama\.cpp /tokenize takes text only; got chat"):
        tokenize_body("llamacpp", "m", [{"role": "user", "content": "hi"}], True)


def test_stepper_without_encoder_refuses_an_observation():
    from precision_gym.cost import get_preset
    from precision_gym.envs.agent_step import AgentStepper
    from precision_gym.prompting.alfworld import ALFWorldReActAgent

    stepper = AgentStepper(
        ALFWorldReActAgent(), [], get_preset("alfworld-qwen3-4b-awq-w4"), None, 5, 4
    )
    with pytest.raises(ConfigError, match="needs an encoder, got encoder=None"):
        stepper.observation(None, None)
