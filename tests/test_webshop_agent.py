"""WebShop prompt builder and action parser."""

from __future__ import annotations

import pytest

from precision_gym.error import ConfigError
from precision_gym.prompting.base import AgentState
from precision_gym.prompting.webshop import WebShopAgent, parse_webshop_action
from precision_gym.tasks.webshop import WebShopTask

SEARCH_PAGE = ["search[...]"]
ITEM_PAGE = ["click[back to search]", "click[< prev]", "click[black]", "click[buy now]"]


@pytest.mark.parametrize(
    ("text", "admissible", "expected"),
    [
        (
            "<think>go</think><action>search[Red Shoes]</action>",
            SEARCH_PAGE,
            ("search[Red Shoes]", True),
        ),
        (
            "<think>x</think>\n<action> click[Buy Now] </action>",
            ITEM_PAGE,
            ("click[buy now]", True),
        ),
        ("<action>click[BLACK]</action>", ITEM_PAGE, ("click[black]", True)),
        ("<action>click[white]</action>", ITEM_PAGE, ("click[white]", False)),
        ("<action>search[]</action>", SEARCH_PAGE, ("search[]", False)),
        ("<action>search[shoes]</action>", ITEM_PAGE, ("search[shoes]", False)),
        ("<action>click[buy now]</action>", SEARCH_PAGE, ("click[buy now]", False)),
        # no action block: the last command in the text
        ("I will search[a] then click[ < Prev ]", ITEM_PAGE, ("click[< prev]", True)),
        # the last block wins over commands in the reasoning
        (
            (
                "<think>maybe click[black]</think><action>click[black]</action>"
                "<action>click[buy now]</action>"
            ),
            ITEM_PAGE,
            ("click[buy now]", True),
        ),
        ("<think>...</think><action>click[buy now]", ITEM_PAGE, ("click[buy now]", True)),
        ("<action>buy it</action>", ITEM_PAGE, ("buy it", False)),
        ("", ITEM_PAGE, ("", False)),
        ("<action>search[  many   spaces ]</action>", SEARCH_PAGE, ("search[many spaces]", True)),
    ],
)
def test_parse_webshop_action(text: str, admissible: list[str], expected: tuple[str, bool]) -> None:
    assert parse_webshop_action(text, admissible) == expected


def _state(n_steps: int) -> AgentState:
    actions = [f"click[a{k}]" for k in range(n_steps)]
    observations = [f"obs after a{k}" for k in range(n_steps)]
    return AgentState(
        task_description="i need red shoes, and price lower than 40.00 dollars",
        initial_observation="WebShop [SEP] Instruction: [SEP] i need red shoes [SEP] Search",
        actions=actions,
        observations=observations,
        admissible_commands=["search[...]"] if n_steps == 0 else ITEM_PAGE,
        step=n_steps,
    )


def test_prompt_without_history() -> None:
    agent = WebShopAgent()
    prompt = agent.build_prompt(_state(0))
    assert isinstance(prompt, list) and len(prompt) == 1 and prompt[0]["role"] == "user"
    content = prompt[0]["content"]
    assert "Your task is to: i need red shoes, and price lower than 40.00 dollars." in content
    assert "Your current observation is: WebShop [SEP] Instruction:" in content
    assert "'search[<your query>]'" in content
    assert "<think> </think>" in content and "<action> </action>" in content
    assert "Prior to this step" not in content


def test_prompt_keeps_most_recent_history() -> None:
    agent = WebShopAgent(history_length=3)
    content = agent.build_prompt(_state(5))[0]["content"]
    assert "already taken 5 step(s)" in content and "most recent 3 observations" in content
    assert "Action 2: 'click[a1]'" not in content
    assert "[Observation 3: 'obs after a1', Action 3: 'click[a2]']" in content
    assert "[Observation 5: 'obs after a3', Action 5: 'click[a4]']" in content
    assert "You are now at step 6 and your current observation is: obs after a4." in content
    assert "'click[buy now]'" in content
    first = agent.build_prompt(_state(1))[0]["content"]
    assert "[Observation 1: 'WebShop [SEP] Instruction:" in first
    assert "most recent 1 observations" in first


def test_agent_settings_and_errors() -> None:
    agent = WebShopAgent()
    assert agent.sampling.max_tokens == 512 and agent.sampling.temperature == 0.0
    assert not agent.is_thinking("<think>x</think>")
    assert agent.parse("<action>click[black]</action>", ITEM_PAGE) == ("click[black]", True)
    with pytest.raises(ConfigError, match=r"history_length must be an int >= 0, got -1"):
        WebShopAgent(history_length=-1)


def test_agent_drives_engine_with_expert_text() -> None:
    task = WebShopTask()
    agent = WebShopAgent()
    obs = task.reset("test", 0)
    actions: list[str] = []
    observations: list[str] = []
    while (expert := task.expert_command()) is not None:
        state = AgentState(task.description, "", actions, observations, obs.admissible_commands, 0)
        assert agent.build_prompt(state)
        command, valid = agent.parse(
            f"<think>ok</think><action>{expert}</action>", obs.admissible_commands
        )
        assert valid
        obs = task.step(command)
        actions.append(command)
        observations.append(obs.text)
    assert obs.won
