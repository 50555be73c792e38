"""A loaded WebShop catalogue (products, prices, goals, splits, search) and its loader."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from precision_gym.error import CorruptDataError, DataNotFoundError
from precision_gym.tasks import webshop_synthetic
from precision_gym.tasks.webshop.data import (
    HOW_TO_GET,
    WEBSHOP_FILES,
    check_schema,
    read_json,
    require_files,
    verify_webshop_files,
)
from precision_gym.tasks.webshop.goals import build_human_goals, build_synthetic_goals
from precision_gym.tasks.webshop.products import build_products
from precision_gym.tasks.webshop.search import TOP_K, SearchIndex
from precision_gym.tasks.webshop.splits import split_bounds
from precision_gym.tasks.webshop_reward import WebShopGoal, WebShopProduct

__all__ = ["WebShopCatalogue", "load_catalogue"]


@dataclass
class WebShopCatalogue:
    """Products, prices, goals, splits and the search index of one loaded catalogue."""

    products: list[WebShopProduct]
    by_asin: dict[str, WebShopProduct]
    prices: dict[str, float]
    goals: list[WebShopGoal]
    synthetic: bool
    source: str
    split_bounds: dict[str, tuple[int, int]] = field(default_factory=dict)
    _search: SearchIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.split_bounds = split_bounds(len(self.goals))
        self._search = SearchIndex(self.products)

    def search(self, query: str, k: int = TOP_K) -> list[str]:
        """ASINs of the top ``k`` BM25 hits (positive score only), best first."""
        return self._search.search(query, k)


def _build_catalogue(
    records: list[dict[str, Any]],
    ins: dict[str, Any],
    human: dict[str, Any] | None,
    *,
    num_products: int | None,
    seed: int,
    synthetic: bool,
    source: str,
) -> WebShopCatalogue:
    pairs = build_products(records, ins, num_products)
    products = [p for p, _ in pairs]
    rng = random.Random(seed)
    prices: dict[str, float] = {}
    for p in products:
        prices[p.asin] = p.pricing[0] if len(p.pricing) == 1 else rng.uniform(*p.pricing[:2])
    if human is not None:
        goals = build_human_goals(products, human, prices, rng)
    else:
        goals = build_synthetic_goals(products, ins, prices, rng)
    random.Random(seed).shuffle(goals)
    return WebShopCatalogue(
        products=products,
        by_asin={p.asin: p for p in products},
        prices=prices,
        goals=goals,
        synthetic=synthetic,
        source=source,
    )


_CACHE: dict[tuple, WebShopCatalogue] = {}
_CACHE_LOCK = threading.Lock()


def load_catalogue(
    data_dir: str | Path | None,
    *,
    human_goals: bool = False,
    num_products: int | None = None,
    seed: int = 233,
    origin: str = "data_dir",
) -> WebShopCatalogue:
    """Load (cached per process) the catalogue in ``data_dir``, or the synthetic one for None.

    Files whose records all carry the synthetic marker are labelled synthetic; real files
    are checked against :data:`WEBSHOP_FILES` (a warning on mismatch).
    """
    if data_dir is None:
        key: tuple = ("synthetic", human_goals, num_products, seed)
    else:
        folder = Path(data_dir).expanduser().resolve()
        files = require_files(folder, origin, human_goals)
        key = (
            str(folder),
            tuple(sorted((k, str(p), p.stat().st_mtime_ns) for k, p in files.items())),
            human_goals,
            num_products,
            seed,
        )
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    if data_dir is None:
        records, ins, human = webshop_synthetic.build_synthetic_catalogue()
        catalogue = _build_catalogue(
            records,
            ins,
            human if human_goals else None,
            num_products=num_products,
            seed=seed,
            synthetic=True,
            source="synthetic (built in)",
        )
    else:
        records = read_json(files["items_shuffle"])
        ins = read_json(files["items_ins"])
        human = read_json(files["items_human_ins"]) if human_goals else None
        if not isinstance(records, list) or not isinstance(ins, dict):
            raise DataNotFoundError(
                f"WebShop files in {folder} have the wrong shape: expected a JSON list in "
                f"{files['items_shuffle'].name} and a JSON object in {files['items_ins'].name}"
                f", got {type(records).__name__} and {type(ins).__name__}. {HOW_TO_GET}"
            )
        check_schema(records, ins, human, files)
        synthetic = bool(records) and all(webshop_synthetic.is_synthetic_record(r) for r in records)
        if not synthetic:
            expected = {
                p.name: WEBSHOP_FILES[p.name] for p in files.values() if p.name in WEBSHOP_FILES
            }
            verify_webshop_files(folder, expected)
        catalogue = _build_catalogue(
            records,
            ins,
            human,
            num_products=num_products,
            seed=seed,
            synthetic=synthetic,
            source=("synthetic files in " if synthetic else "") + str(folder),
        )
        if not catalogue.goals:
            raise CorruptDataError(
                f"WebShop files in {folder} give {len(catalogue.products)} products and no "
                f"goal: expected {files['items_ins'].name} entries (keyed by asin) with "
                "'instruction' and 'instruction_attributes'"
                + (f", or {files['items_human_ins'].name} goals" if human is not None else "")
                + f". {HOW_TO_GET}"
            )
    with _CACHE_LOCK:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = catalogue
    return catalogue
