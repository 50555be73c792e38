"""WebShop reward on hand-made cases with known scores."""

from __future__ import annotations

import pytest

from precision_gym.tasks.webshop_reward import (
    WebShopGoal,
    WebShopProduct,
    attribute_reward,
    get_noun_extractor,
    heuristic_nouns,
    normalize_color,
    option_reward,
    type_reward,
    webshop_reward,
)

PATH = "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos"


def _product(**kw) -> WebShopProduct:
    base: dict = {
        "asin": "B0TEST0001",
        "title": "Lumora Shampoo - Sulfate Free, Dry Hair",
        "description": "A gentle shampoo with argan oil.",
        "bullets": ("SULFATE FREE: gentle", "Color safe formula"),
        "price_tag": "$12.0",
        "pricing": (12.0,),
        "options": {"size": ("8 fl oz", "16 fl oz"), "scent": ("citrus", "lavender")},
        "attributes": ("sulfate free", "dry hair", "argan oil"),
        "query": "shampoo",
        "category": "beauty",
        "product_category": PATH,
    }
    base.update(kw)
    return WebShopProduct(**base)


def _goal(**kw) -> WebShopGoal:
    base: dict = {
        "asin": "B0TEST0001",
        "instruction_text": "i need sulfate free shampoo for dry hair",
        "attributes": ("sulfate free", "dry hair"),
        "goal_options": {"size": "16 fl oz", "scent": "citrus"},
        "price_upper": 30.0,
        "query": "shampoo",
        "category": "beauty",
        "product_category": PATH,
        "name": "Lumora Shampoo - Sulfate Free, Dry Hair",
    }
    base.update(kw)
    return WebShopGoal(**base)


H = heuristic_nouns  # tests pin the heuristic noun backend for determinism


def test_perfect_purchase_scores_one() -> None:
    score, parts = webshop_reward(
        _goal(), _product(), {"size": "16 fl oz", "scent": "citrus"}, 12.0, nouns=H
    )
    assert score == 1.0
    assert parts["r_type"] == 1.0 and parts["r_price"] is True
    assert parts["num_attr_matches"] == 2 and parts["num_option_matches"] == 2
    assert parts["noun_backend"] == "custom"


def test_price_over_bound_loses_one_of_five() -> None:
    score, parts = webshop_reward(
        _goal(price_upper=10.0), _product(), {"size": "16 fl oz", "scent": "citrus"}, 12.0, nouns=H
    )
    assert parts["r_price"] is False
    assert score == pytest.approx(4 / 5)


def test_missing_and_wrong_options() -> None:
    # one option right, one wrong: (2 att + 1 opt + 1 price) / 5
    score, _ = webshop_reward(
        _goal(), _product(), {"size": "16 fl oz", "scent": "lavender"}, 12.0, nouns=H
    )
    assert score == pytest.approx(4 / 5)
    # no option chosen: (2 + 0 + 1) / 5
    score, parts = webshop_reward(_goal(), _product(), {}, 12.0, nouns=H)
    assert score == pytest.approx(3 / 5)
    assert parts["r_option"] == 0.0


def test_attribute_found_in_text_only() -> None:
    # "color safe" is not an attribute but appears in the bullets; "tea tree" nowhere
    goal = _goal(attributes=("color safe", "tea tree"), goal_options={})
    r_att, n = attribute_reward(_product(), goal)
    assert (r_att, n) == (0.5, 1)
    score, _ = webshop_reward(goal, _product(), {}, 12.0, nouns=H)
    assert score == pytest.approx((1 + 0 + 1) / 3)


def test_fuzzy_attribute_match() -> None:
    goal = _goal(attributes=("sulfate-free",), goal_options={})
    assert attribute_reward(_product(attributes=("Sulfate Free",)), goal) == (1.0, 1)
    goal = _goal(attributes=("paraben free",), goal_options={})
    assert attribute_reward(
        _product(attributes=("sulfate free",), description="", bullets=()), goal
    ) == (0.0, 0)


def test_type_reward_levels() -> None:
    goal = _goal()
    # same query -> full type reward
    assert type_reward(_product(), goal, H)["r_type"] == 1.0
    # different query and category; the title shares 1 of 4 goal nouns -> 0.25 > 0.2 -> 1.0
    other = _product(
        query="soap", product_category="Home › Kitchen", title="Shampoo Bar Soap", attributes=()
    )
    parts = type_reward(other, _goal(name="Lumora Shampoo Sulfate Hair"), H)
    assert parts["title_score"] == pytest.approx(0.25) and parts["r_type"] == 1.0
    # 1 of 5 goal nouns (lumora shampoo sulfate dry hair): 0.2 is not > 0.2 -> 0.5
    parts = type_reward(other, goal, H)
    assert parts["title_score"] == pytest.approx(0.2) and parts["r_type"] == 0.5
    score, _ = webshop_reward(goal, other, {"size": "16 fl oz", "scent": "citrus"}, 1.0, nouns=H)
    # "sulfate free" still matches through the bullets, "dry hair" nowhere
    assert score == pytest.approx(0.5 * (1 + 2 + 1) / 5)
    # a category match (>= 2 shared segments) keeps 1.0 despite the low title score
    parts = type_reward(_product(query="soap", title="Shampoo Bar Soap"), goal, H)
    assert parts["category_match"] and parts["r_type"] == 1.0
    # title score below 0.1 -> 0.1, even with a query match
    goal11 = _goal(name="alpha beta gamma delta epsilon zeta eta theta iota kappa lumora")
    parts = type_reward(_product(), goal11, H)
    assert parts["title_score"] == pytest.approx(1 / 11) and parts["r_type"] == 0.1
    # no shared noun -> 0
    parts = type_reward(_product(title="Wireless Headphones"), goal, H)
    assert parts["title_score"] == 0.0 and parts["r_type"] == 0.0
    score, _ = webshop_reward(goal, _product(title="Wireless Headphones"), {}, 1.0, nouns=H)
    assert score == 0.0


def test_goal_title_without_nouns_scores_point_two() -> None:
    parts = type_reward(_product(query="x"), _goal(name="the best and new"), H)
    assert parts["title_score"] == 0.2 and parts["r_type"] == 1.0  # query differs, category same


def test_colour_normalisation_in_options() -> None:
    assert normalize_color("dark navy blue") == "blue"
    assert normalize_color("xl") == "xl"
    # "navy blue" and "royal blue" both normalise to "blue"
    assert option_reward(["royal blue"], ["navy blue"]) == (1.0, 1)
    assert option_reward(["red"], ["navy blue"]) == (0.0, 0)
    assert option_reward(["red"], []) == (None, 0)


def test_human_goal_options_as_values() -> None:
    goal = _goal(goal_options=("16 fl oz",))
    score, parts = webshop_reward(goal, _product(), {"size": "16 fl oz"}, 12.0, nouns=H)
    assert score == 1.0 and parts["num_option_matches"] == 1


def test_no_attributes_no_options_price_only() -> None:
    goal = _goal(attributes=(), goal_options={})
    assert webshop_reward(goal, _product(), {}, 12.0, nouns=H)[0] == 1.0
    assert webshop_reward(goal, _product(), {}, 99.0, nouns=H)[0] == 0.0


def test_heuristic_nouns() -> None:
    assert heuristic_nouns("Lumora Shampoo - Sulfate Free, Dry Hair 16 Fl Oz") == [
        "lumora",
        "shampoo",
        "sulfate",
        "dry",
        "hair",
    ]
    assert heuristic_nouns("the best and new") == []


def test_active_noun_backend_is_named() -> None:
    name, extract = get_noun_extractor()
    assert name in ("heuristic", "spacy:en_core_web_sm")
    assert "shampoo" in extract("a bottle of shampoo")
    _, parts = webshop_reward(_goal(), _product(), {}, 12.0)
    assert parts["noun_backend"] == name
