"""The WebShop expert: the next command of a scripted shopper that reaches the goal product."""

from __future__ import annotations

import re

from precision_gym.tasks.webshop.catalogue import WebShopCatalogue
from precision_gym.tasks.webshop.session import (
    BACK,
    BUY,
    NEXT,
    PREV,
    RESULTS_PER_PAGE,
    Session,
)
from precision_gym.tasks.webshop_reward import WebShopGoal, WebShopProduct, normalize_color

__all__ = ["expert_command"]


def _queries(goal: WebShopGoal) -> list[str]:
    """The search queries to try, in order: the instruction (price clause cut), the title,
    then query + title."""
    text = goal.instruction_text
    cut = text.find(", and price lower than")
    if cut >= 0:
        text = text[:cut]
    first = " ".join(re.sub(r"[\[\]]", " ", text).lower().split())
    title = " ".join(re.sub(r"[\[\]]", " ", goal.name).lower().split())
    out: list[str] = []
    for q in (first, title, f"{goal.query} {title}".strip()):
        if q and q not in out:
            out.append(q)
    return out


def _option_clicks(goal: WebShopGoal, chosen: dict[str, str], product: WebShopProduct) -> list[str]:
    """The option values to click for the goal, in page order (not yet chosen)."""
    clicks: list[str] = []
    if isinstance(goal.goal_options, dict):
        for name, value in goal.goal_options.items():
            value = str(value).lower()
            if value in product.options.get(name, ()) and chosen.get(name) != value:
                clicks.append(value)
        return clicks
    from rapidfuzz import fuzz
    from rapidfuzz.utils import default_process

    for wanted in goal.option_values():
        target = normalize_color(wanted.lower())
        best: tuple[float, str, str] | None = None
        for name, values in product.options.items():
            for v in values:
                sim = fuzz.token_set_ratio(normalize_color(v), target, processor=default_process)
                if sim > 85 and (best is None or sim > best[0]):
                    best = (sim, name, v)
        if best is not None and chosen.get(best[1]) != best[2] and best[2] not in clicks:
            clicks.append(best[2])
    return clicks


def expert_command(s: Session, goal: WebShopGoal, catalogue: WebShopCatalogue) -> str | None:
    """Search with the goal's words; page to the target ASIN and click it (back to search
    with the product title, then query + title, when it is not among the hits); click each
    goal option value; then ``click[buy now]``. None once the episode is over. When every
    query misses, it buys the first hit (best effort; never on the synthetic catalogue)."""
    if s.done:
        return None
    target = goal.asin
    queries = _queries(goal)
    exhausted = all(q in s.searches for q in queries)
    if s.page == "search":
        for q in queries:
            if q not in s.searches:
                return f"search[{q}]"
        return f"search[{queries[0]}]"
    if s.page == "results":
        if target in s.results:
            pos = s.results.index(target) // RESULTS_PER_PAGE + 1
            if pos == s.page_num:
                return f"click[{target.lower()}]"
            return f"click[{NEXT}]" if pos > s.page_num else f"click[{PREV}]"
        if exhausted and s.results:
            if s.page_num > 1:
                return f"click[{PREV}]"
            return f"click[{s.results[0].lower()}]"
        return f"click[{BACK}]"
    if s.page == "sub":
        return f"click[{PREV}]"
    # item page
    if s.asin != target and not (exhausted and target not in s.results):
        return f"click[{PREV}]"
    product = catalogue.by_asin[s.asin or ""]
    clicks = _option_clicks(goal, s.options, product)
    if clicks:
        return f"click[{clicks[0]}]"
    return f"click[{BUY}]"
