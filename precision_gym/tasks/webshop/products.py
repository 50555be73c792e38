"""Product records -> :class:`WebShopProduct`: price and option parsing, record filtering."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from precision_gym.tasks.webshop_reward import WebShopProduct

__all__ = ["build_products", "parse_options", "parse_pricing"]


def parse_pricing(pricing: Any) -> tuple[tuple[float, ...], str]:
    """``(bounds, price_tag)`` from a ``pricing`` string; ``((100.0,), "$100.0")`` if absent."""
    values: list[float] = []
    if isinstance(pricing, str) and pricing:
        for part in pricing.split("$")[1:]:
            digits = re.sub(r"[^\d.]", "", part)
            try:
                values.append(float(Decimal(digits)))
            except InvalidOperation:
                continue
    if not values:
        return (100.0,), "$100.0"
    if len(values) == 1:
        return (values[0],), f"${values[0]}"
    return (values[0], values[1]), f"${values[0]} to ${values[1]}"


def parse_options(customization: Any) -> dict[str, tuple[str, ...]]:
    options: dict[str, tuple[str, ...]] = {}
    if not isinstance(customization, dict):
        return options
    for name, contents in customization.items():
        if contents is None:
            continue
        values = []
        for content in contents:
            value = str(content.get("value", "")).strip().replace("/", " | ").lower()
            if value and value not in values:
                values.append(value)
        if values:
            options[str(name).lower()] = tuple(values)
    return options


def build_products(
    records: list[dict[str, Any]], ins: dict[str, Any], num_products: int | None
) -> list[tuple[WebShopProduct, dict[str, Any]]]:
    if num_products is not None:
        records = records[:num_products]
    seen: set[str] = set()
    out: list[tuple[WebShopProduct, dict[str, Any]]] = []
    for rec in records:
        asin = str(rec.get("asin", "nan"))
        if asin == "nan" or not asin or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        pricing, price_tag = parse_pricing(rec.get("pricing"))
        bullets = rec.get("small_description") or []
        if not isinstance(bullets, list):
            bullets = [str(bullets)]
        entry = ins.get(asin) or {}
        attributes = entry.get("attributes") if "attributes" in entry else ["DUMMY_ATTR"]
        rating = rec.get("average_rating") or "N.A."
        product = WebShopProduct(
            asin=asin,
            title=str(rec.get("name", "")),
            description=str(rec.get("full_description", "") or ""),
            bullets=tuple(str(b) for b in bullets),
            price_tag=price_tag,
            pricing=pricing,
            options=parse_options(rec.get("customization_options")),
            attributes=tuple(attributes or ()),
            query=str(rec.get("query", "")).lower().strip(),
            category=str(rec.get("category", "")),
            product_category=str(rec.get("product_category", "")),
            rating=str(rating),
        )
        out.append((product, rec))
    return out
