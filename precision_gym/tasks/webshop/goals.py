"""Goals of a catalogue: synthetic goals (per option combination) and human goals, with the
price bound drawn as in the benchmark."""

from __future__ import annotations

import itertools
import random
from typing import Any

from precision_gym.tasks.webshop_reward import WebShopGoal, WebShopProduct

__all__ = ["NO_PRICE_BOUND", "PRICE_RANGE", "build_human_goals", "build_synthetic_goals"]

PRICE_RANGE = [10.0 * i for i in range(1, 100)]
NO_PRICE_BOUND = 1_000_000.0


def _price_bound(rng: random.Random, price: float) -> tuple[float, str]:
    above = [p for p in PRICE_RANGE if p > price][:4]
    if len(above) >= 2:
        _, upper = sorted(rng.sample(above, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return NO_PRICE_BOUND, ""


def _goal(
    product: WebShopProduct, text: str, attributes: list[str], options: Any, upper: float
) -> WebShopGoal:
    return WebShopGoal(
        asin=product.asin,
        instruction_text=text,
        attributes=tuple(attributes),
        goal_options=options,
        price_upper=upper,
        query=product.query,
        category=product.category,
        product_category=product.product_category,
        name=product.title,
    )


def build_synthetic_goals(
    products: list[WebShopProduct],
    ins: dict[str, Any],
    prices: dict[str, float],
    rng: random.Random,
) -> list[WebShopGoal]:
    goals: list[WebShopGoal] = []
    for product in products:
        entry = ins.get(product.asin) or {}
        instruction = entry.get("instruction")
        attributes = entry.get("instruction_attributes") or []
        if not instruction or not attributes:
            continue
        upper, price_text = _price_bound(rng, prices[product.asin])
        names = sorted(product.options)
        for combo in itertools.product(*(product.options[n] for n in names)):
            goal_options = dict(zip(names, combo, strict=True))
            option_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
            option_text = " with " + option_text if option_text else ""
            text = f"{instruction}{option_text}{price_text}"
            goals.append(_goal(product, text, attributes, goal_options, upper))
    return goals


def build_human_goals(
    products: list[WebShopProduct],
    human: dict[str, Any],
    prices: dict[str, float],
    rng: random.Random,
) -> list[WebShopGoal]:
    goals: list[WebShopGoal] = []
    for product in products:
        for rec in human.get(product.asin) or []:
            attributes = rec.get("instruction_attributes") or []
            if not attributes:
                continue
            upper, price_text = _price_bound(rng, prices[product.asin])
            options = rec.get("instruction_options") or []
            options = dict(options) if isinstance(options, dict) else tuple(str(o) for o in options)
            text = str(rec.get("instruction", "")).strip(".") + price_text
            goals.append(_goal(product, text, attributes, options, upper))
    return goals
