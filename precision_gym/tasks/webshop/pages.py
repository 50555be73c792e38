"""Pages: what each page shows (observation text) and what can be clicked on it.

search -> results (10 per page of the top 50 BM25 hits) -> item -> sub-pages (description,
features, reviews). Observation text joins the page's visible strings with ``" [SEP] "``.
Admissible commands: ``search[...]`` (a template standing for any query) when the search bar
is shown, plus ``click[x]`` for each lower-cased clickable.
"""

from __future__ import annotations

from typing import Any

from precision_gym.tasks.base import TaskObservation
from precision_gym.tasks.webshop.catalogue import WebShopCatalogue
from precision_gym.tasks.webshop.session import (
    BACK,
    BUY,
    NEXT,
    PREV,
    RESULTS_PER_PAGE,
    SEARCH_TEMPLATE,
    SUBPAGES,
    Session,
    page_results,
)
from precision_gym.tasks.webshop_reward import WebShopGoal

__all__ = ["SEP", "clickables", "observation", "page_text"]

SEP = " [SEP] "


def clickables(s: Session, catalogue: WebShopCatalogue) -> list[str]:
    """The lower-cased clickables of the page (empty on the search page and once done)."""
    if s.done or s.page == "search":
        return []
    if s.page == "results":
        out = [BACK]
        if s.page_num > 1:
            out.append(PREV)
        if s.page_num * RESULTS_PER_PAGE < len(s.results):
            out.append(NEXT)
        out.extend(a.lower() for a in page_results(s))
        return out
    if s.page == "item":
        product = catalogue.by_asin[s.asin or ""]
        out = [BACK, PREV]
        for values in product.options.values():
            out.extend(v for v in values if v not in out)
        out.extend([*SUBPAGES, BUY])
        return out
    return [BACK, PREV]


def page_text(s: Session, catalogue: WebShopCatalogue, goal: WebShopGoal) -> str:
    """The page's visible strings joined with :data:`SEP`."""
    if s.page == "search":
        return SEP.join(["WebShop", "Instruction:", goal.instruction_text, "Search"])
    if s.done:
        breakdown = s.breakdown or {}
        return SEP.join(
            [
                "Thank you for shopping with us!",
                f"Your score (min 0.0, max 1.0): {s.score:.4f}",
                f"Purchased: {s.asin}",
                f"Options: {', '.join(f'{k}: {v}' for k, v in s.options.items()) or 'none'}",
                f"Price match: {bool(breakdown.get('r_price'))}",
            ]
        )
    if s.page == "results":
        total = len(s.results)
        parts = ["Back to Search", f"Page {s.page_num} (Total results: {total})"]
        if s.page_num > 1:
            parts.append("< Prev")
        if s.page_num * RESULTS_PER_PAGE < total:
            parts.append("Next >")
        for asin in page_results(s):
            p = catalogue.by_asin[asin]
            parts.extend([asin, p.title, p.price_tag])
        return SEP.join(parts)
    product = catalogue.by_asin[s.asin or ""]
    parts = ["Back to Search", "< Prev"]
    if s.page == "item":
        for name, values in product.options.items():
            parts.append(name)
            parts.extend(values)
        parts.extend(
            [
                product.title,
                f"Price: {product.price_tag}",
                f"Rating: {product.rating}",
                "Description",
                "Features",
                "Reviews",
                "Buy Now",
            ]
        )
    elif s.sub == "description":
        parts.append(product.description)
    elif s.sub == "features":
        parts.extend(product.bullets)
    # reviews: the catalogue files carry none (as the original's default build)
    return SEP.join(p for p in parts if p)


def observation(
    s: Session, catalogue: WebShopCatalogue, goal: WebShopGoal, *, synthetic: bool, valid: bool
) -> TaskObservation:
    """The page as a :class:`TaskObservation` (a command that was not admissible: ``valid``
    False, score 0)."""
    commands = [SEARCH_TEMPLATE] if (s.page == "search" and not s.done) else []
    commands.extend(f"click[{c}]" for c in clickables(s, catalogue))
    won = s.done and s.score >= 1.0 - 1e-9
    extra: dict[str, Any] = {
        "catalogue": "synthetic" if synthetic else "real",
        "synthetic": synthetic,
        "page": "done" if s.done else s.page,
        "goal_asin": goal.asin,
    }
    if s.done:
        extra["purchased_asin"] = s.asin
        extra["purchased_options"] = dict(s.options)
        extra["reward_breakdown"] = dict(s.breakdown or {})
    return TaskObservation(
        text=page_text(s, catalogue, goal),
        admissible_commands=commands,
        won=won,
        done=s.done,
        score=float(s.score) if s.done and valid else 0.0,
        valid=valid,
        extra=extra,
    )
