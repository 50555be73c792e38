"""WebShop as a text task: catalogue loading, BM25 search, pages, goals and the expert.

A re-implementation of the WebShop benchmark's text environment (Yao et al., 2022) for
:class:`~precision_gym.tasks.base.TextTask`:

* **Data.** The real small catalogue is ``items_shuffle_1000.json`` (products) plus
  ``items_ins_v2_1000.json`` (attributes and synthetic-goal instructions), and
  ``items_human_ins.json`` for human goals, in ``data_dir`` or ``$WEBSHOP_DATA``. Without
  either, the built-in **synthetic** catalogue of
  :mod:`precision_gym.tasks.webshop_synthetic` is used (``task_type`` then starts with
  ``"synthetic/"`` and ``extra["catalogue"] == "synthetic"``).
* **Products.** Title = ``name``, description = ``full_description``, bullets =
  ``small_description``; the price is parsed from ``pricing`` ($100 when missing; a range
  gives a uniform draw at load, from ``random.Random(seed)``); options from
  ``customization_options`` (lower-cased, ``"/"`` -> ``" | "``); attributes from
  ``items_ins_v2``. Records with an ASIN of ``"nan"``, longer than 10 characters, or seen
  before are dropped.
* **Goals.** Synthetic: one goal per product with an instruction and per combination of its
  option values; text = instruction + ``" with name: value, and ..."`` + price clause. Human:
  one goal per record of ``items_human_ins.json`` with attributes. The price bound takes the
  first 4 multiples of 10 above the price, samples 2 and keeps the larger (no bound when
  fewer than 2 exist). Goals are shuffled with ``random.Random(seed)`` (the original seeds
  with 233 before shuffling, so the default reproduces its goal order).
* **Splits.** ``test`` = goals ``[0, 500)``, ``eval`` = ``[500, 1500)``, ``train`` = the rest,
  as in the benchmark, when there are at least 2000 goals. Smaller pools (the synthetic
  catalogue has about 150) are split 20% / 20% / 60% in goal order (each at least 1 goal).
* **Pages.** search -> results (10 per page of the top 50 BM25 hits) -> item -> sub-pages
  (description, features, reviews). Observation text joins the page's visible strings with
  ``" [SEP] "``. Admissible commands: ``search[...]`` (a template standing for any query)
  when the search bar is shown, plus ``click[x]`` for each lower-cased clickable. Commands
  are case-insensitive and their arguments are lower-cased, as in the original. A command
  that is not admissible changes nothing and returns ``valid=False`` with score 0.
* **Search.** BM25 (``bm25s``, Lucene variant, k1=1.5, b=0.75) over one document per product:
  lower-cased title + description + first bullet + option text, tokenised into words with
  English stop words removed and a light plural stemmer (the original uses pyserini/Lucene
  with Porter stemming; rankings differ in detail). Only documents with a positive score are
  hits, at most 50.
* **Reward.** :func:`precision_gym.tasks.webshop_reward.webshop_reward` at ``click[buy now]``,
  which ends the episode; ``won`` iff the score is 1.0.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import threading
import warnings
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from precision_gym.error import ConfigError, CorruptDataError, DataNotFoundError
from precision_gym.tasks.base import TaskObservation, TextTask, check_split
from precision_gym.tasks.webshop_reward import (
    WebShopGoal,
    WebShopProduct,
    normalize_color,
    webshop_reward,
)

__all__ = [
    "SEARCH_TEMPLATE",
    "SEP",
    "WEBSHOP_DATA_ENV",
    "WEBSHOP_FILES",
    "WebShopCatalogue",
    "WebShopTask",
    "load_catalogue",
    "parse_webshop_command",
    "verify_webshop_files",
]

#: environment variable naming the folder with the real WebShop files
WEBSHOP_DATA_ENV = "WEBSHOP_DATA"
#: the admissible-command entry that stands for ``search[<any query>]``
SEARCH_TEMPLATE = "search[...]"
SEP = " [SEP] "

#: file name -> (size in bytes, sha256) of the WebShop benchmark's small-catalogue files
WEBSHOP_FILES: dict[str, tuple[int, str]] = {
    "items_shuffle_1000.json": (
        4467013,
        "30a4765c3a327af72d9a9a95a6b2486d516f0fa1d3ecd83681901ce82a21b269",
    ),
    "items_ins_v2_1000.json": (
        147099,
        "f88a36314a397b53b3d9c3fa5878e5f7b26d35019a51ec83fbedeca61a948f6f",
    ),
    "items_human_ins.json": (
        5137548,
        "cf78667548a71786e1d9049c24b802e48e1084ad4bb021cae56ce1f6d96954a3",
    ),
}
# accepted names per file kind, first found wins (the full catalogue's names second)
_FILE_NAMES = {
    "items_shuffle": ("items_shuffle_1000.json", "items_shuffle.json"),
    "items_ins": ("items_ins_v2_1000.json", "items_ins_v2.json"),
    "items_human_ins": ("items_human_ins.json",),
}
_HOW_TO_GET = (
    "Get the WebShop benchmark's small catalogue (its setup script's 'small' download: "
    "items_shuffle_1000.json, sha256 "
    f"{WEBSHOP_FILES['items_shuffle_1000.json'][1]}, and items_ins_v2_1000.json, sha256 "
    f"{WEBSHOP_FILES['items_ins_v2_1000.json'][1]}; items_human_ins.json, sha256 "
    f"{WEBSHOP_FILES['items_human_ins.json'][1]}, for human goals) and set "
    f"{WEBSHOP_DATA_ENV} to the folder holding them, or pass synthetic=True to use the "
    "built-in synthetic catalogue."
)

PRICE_RANGE = [10.0 * i for i in range(1, 100)]
NO_PRICE_BOUND = 1_000_000.0
RESULTS_PER_PAGE = 10
TOP_K = 50
_FULL_SPLITS = (500, 1500)  # test = [0, 500), eval = [500, 1500), train = rest
_SMALL_SPLIT_SHARES = (0.2, 0.2)


# ---------------------------------------------------------------- file checks


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_webshop_files(
    data_dir: str | Path, expected: dict[str, tuple[int, str]] | None = None
) -> dict[str, str]:
    """Check a user's WebShop files against the known sha256 sums.

    Returns file name -> ``"ok"``, ``"mismatch"`` or ``"missing"`` for each file of
    ``expected`` (default :data:`WEBSHOP_FILES`), and emits a :class:`UserWarning` per
    mismatch that states the expected and the actual digest. Never raises on a mismatch:
    a differently built catalogue may be intended.
    """
    table = WEBSHOP_FILES if expected is None else expected
    folder = Path(data_dir)
    status: dict[str, str] = {}
    for name, (_size, digest) in table.items():
        path = folder / name
        if not path.is_file():
            status[name] = "missing"
            continue
        actual = _sha256(path)
        if actual == digest:
            status[name] = "ok"
        else:
            status[name] = "mismatch"
            warnings.warn(
                f"WebShop file {path} has sha256 {actual}, expected {digest}: results may "
                "not be comparable with the benchmark's",
                UserWarning,
                stacklevel=2,
            )
    return status


# ---------------------------------------------------------------- catalogue


def _parse_pricing(pricing: Any) -> tuple[tuple[float, ...], str]:
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


def _parse_options(customization: Any) -> dict[str, tuple[str, ...]]:
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


_SEARCH_STOP_TEXT = """a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with i me my im want need looking find get"""
_SEARCH_STOP = frozenset(_SEARCH_STOP_TEXT.split())
_WORD_RE = re.compile(r"\w\w+")


def _stem(token: str) -> str:
    if len(token) > 3 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def _tokenise(text: str) -> list[str]:
    return [_stem(t) for t in _WORD_RE.findall(text.lower()) if t not in _SEARCH_STOP]


def _option_text(options: dict[str, tuple[str, ...]]) -> str:
    return ", and ".join(f"{name}: {', '.join(values)}" for name, values in options.items())


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
    _index: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        n = len(self.goals)
        if n >= _FULL_SPLITS[1] + _FULL_SPLITS[0]:
            a, b = _FULL_SPLITS
        else:
            a = max(1, round(n * _SMALL_SPLIT_SHARES[0])) if n >= 3 else n
            b = min(n, a + max(1, round(n * _SMALL_SPLIT_SHARES[1]))) if n >= 3 else n
        self.split_bounds = {"test": (0, a), "eval": (a, b), "train": (b, n)}

    def search(self, query: str, k: int = TOP_K) -> list[str]:
        """ASINs of the top ``k`` BM25 hits (positive score only), best first."""
        index = self._search_index()
        tokens = _tokenise(query)
        if not tokens:
            return []
        scores = np.asarray(index.get_scores(tokens), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.products[i].asin for i in order if scores[i] > 0.0]

    def _search_index(self) -> Any:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    import bm25s

                    docs = [
                        _tokenise(
                            " ".join(
                                [
                                    p.title,
                                    p.description,
                                    p.bullets[0] if p.bullets else "",
                                    _option_text(dict(p.options)),
                                ]
                            )
                        )
                        or ["_empty_"]
                        for p in self.products
                    ]
                    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
                    index.index(docs, show_progress=False)
                    self._index = index
        return self._index


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataNotFoundError(
            f"WebShop file {path} is not valid JSON ({exc}): expected the benchmark's "
            f"file. {_HOW_TO_GET}"
        ) from exc


def _check_schema(
    records: list[Any], ins: dict[str, Any], human: Any, files: dict[str, Path]
) -> None:
    """The benchmark's schema, checked before building: a clear error naming the file and
    the first offending record instead of an AttributeError deep inside."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "asin" not in rec:
            got = sorted(rec)[:6] if isinstance(rec, dict) else type(rec).__name__
            raise CorruptDataError(
                f"WebShop file {files['items_shuffle']} has the wrong schema: expected product "
                f"objects with an 'asin' (and 'name', 'pricing', ...), record {i} is {got}. "
                f"{_HOW_TO_GET}"
            )
    for asin, entry in ins.items():
        if not isinstance(entry, dict):
            raise CorruptDataError(
                f"WebShop file {files['items_ins']} has the wrong schema: expected asin -> "
                f"object with 'attributes' / 'instruction', {asin!r} -> {type(entry).__name__}"
            )
    if human is not None and (
        not isinstance(human, dict) or not all(isinstance(v, list) for v in human.values())
    ):
        raise CorruptDataError(
            f"WebShop file {files['items_human_ins']} has the wrong schema: expected asin -> "
            f"list of goal objects, got {type(human).__name__}"
        )


def _build_products(
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
        pricing, price_tag = _parse_pricing(rec.get("pricing"))
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
            options=_parse_options(rec.get("customization_options")),
            attributes=tuple(attributes or ()),
            query=str(rec.get("query", "")).lower().strip(),
            category=str(rec.get("category", "")),
            product_category=str(rec.get("product_category", "")),
            rating=str(rating),
        )
        out.append((product, rec))
    return out


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


def _synthetic_goals(
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


def _human_goals(
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
    pairs = _build_products(records, ins, num_products)
    products = [p for p, _ in pairs]
    rng = random.Random(seed)
    prices: dict[str, float] = {}
    for p in products:
        prices[p.asin] = p.pricing[0] if len(p.pricing) == 1 else rng.uniform(*p.pricing[:2])
    if human is not None:
        goals = _human_goals(products, human, prices, rng)
    else:
        goals = _synthetic_goals(products, ins, prices, rng)
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


def _find_file(folder: Path, kind: str) -> Path | None:
    for name in _FILE_NAMES[kind]:
        if (folder / name).is_file():
            return folder / name
    return None


def _require_files(folder: Path, origin: str, human_goals: bool) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataNotFoundError(
            f"WebShop data folder {folder} (from {origin}) does not exist: expected a folder "
            f"with items_shuffle_1000.json and items_ins_v2_1000.json. {_HOW_TO_GET}"
        )
    kinds = ["items_shuffle", "items_ins"] + (["items_human_ins"] if human_goals else [])
    found: dict[str, Path] = {}
    for kind in kinds:
        path = _find_file(folder, kind)
        if path is None:
            names = " or ".join(_FILE_NAMES[kind])
            size, digest = WEBSHOP_FILES[_FILE_NAMES[kind][0]]
            raise DataNotFoundError(
                f"WebShop file {_FILE_NAMES[kind][0]} is missing: looked for {names} in "
                f"{folder} (from {origin}); expected {_FILE_NAMES[kind][0]} ({size} bytes, "
                f"sha256 {digest}). {_HOW_TO_GET}"
            )
        found[kind] = path
    return found


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
    from precision_gym.tasks import webshop_synthetic

    if data_dir is None:
        key: tuple = ("synthetic", human_goals, num_products, seed)
    else:
        folder = Path(data_dir).expanduser().resolve()
        files = _require_files(folder, origin, human_goals)
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
        records = _read_json(files["items_shuffle"])
        ins = _read_json(files["items_ins"])
        human = _read_json(files["items_human_ins"]) if human_goals else None
        if not isinstance(records, list) or not isinstance(ins, dict):
            raise DataNotFoundError(
                f"WebShop files in {folder} have the wrong shape: expected a JSON list in "
                f"{files['items_shuffle'].name} and a JSON object in {files['items_ins'].name}"
                f", got {type(records).__name__} and {type(ins).__name__}. {_HOW_TO_GET}"
            )
        _check_schema(records, ins, human, files)
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
                + f". {_HOW_TO_GET}"
            )
    with _CACHE_LOCK:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = catalogue
    return catalogue


# ---------------------------------------------------------------- commands and pages

_COMMAND_RE = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


def parse_webshop_command(command: str) -> tuple[str, str] | None:
    """``("search"|"click", lower-cased stripped argument)`` or None when malformed."""
    m = _COMMAND_RE.match(command or "")
    if m is None:
        return None
    return m.group(1).lower(), " ".join(m.group(2).split()).lower()


@dataclass
class _Session:
    """The page state of one episode (plain data: cheap to copy and to pickle)."""

    page: str = "search"  # search | results | item | sub
    query: str = ""
    results: tuple[str, ...] = ()
    page_num: int = 1
    asin: str | None = None
    sub: str | None = None  # description | features | reviews
    options: dict[str, str] = field(default_factory=dict)
    searches: tuple[str, ...] = ()
    done: bool = False
    score: float = 0.0
    breakdown: dict[str, Any] | None = None
    version: int = 0


_BACK = "back to search"
_PREV = "< prev"
_NEXT = "next >"
_BUY = "buy now"
_SUBPAGES = ("description", "features", "reviews")


class WebShopTask(TextTask):
    """WebShop goals as :class:`TextTask` games (see the module docstring for the engine).

    Args:
        data_dir: folder with the real files; None falls back to ``$WEBSHOP_DATA``, else to
            the synthetic catalogue.
        synthetic: True forces the synthetic catalogue (``data_dir`` must then be None),
            False requires real files, None (default) decides as above.
        human_goals: goals from ``items_human_ins.json`` instead of the synthetic goals.
        force_high_on_search: :meth:`forced_high` says True for ``"search"`` steps.
        num_products: keep only the first N product records (as the original's option).
        seed: seed of the price draws, the price bounds and the goal shuffle.
    """

    name = "webshop"
    split_roles: ClassVar[dict[str, str]] = {
        "train": "train",
        "calibration": "eval",
        "test": "test",
    }

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        synthetic: bool | None = None,
        human_goals: bool = False,
        force_high_on_search: bool = True,
        num_products: int | None = None,
        seed: int = 233,
    ) -> None:
        if synthetic is not None and not isinstance(synthetic, bool):
            raise ConfigError(f"synthetic must be True, False or None, got {synthetic!r}")
        if num_products is not None and (
            not isinstance(num_products, int) or isinstance(num_products, bool) or num_products < 1
        ):
            raise ConfigError(f"num_products must be a positive int or None, got {num_products!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        if synthetic is True and data_dir is not None:
            raise ConfigError(
                f"synthetic=True and data_dir={data_dir!r} exclude each other: expected "
                "data_dir=None with synthetic=True, got both"
            )
        self._args = {
            "data_dir": data_dir,
            "synthetic": synthetic,
            "human_goals": bool(human_goals),
            "force_high_on_search": bool(force_high_on_search),
            "num_products": num_products,
            "seed": seed,
        }
        self.human_goals = bool(human_goals)
        self.force_high_on_search = bool(force_high_on_search)
        self.num_products = num_products
        self.seed = seed
        self._data_dir, self._origin = self._resolve(data_dir, synthetic)
        if self._data_dir is not None:  # fail early (and cheaply) on missing files
            _require_files(self._data_dir, self._origin, self.human_goals)
        self._catalogue: WebShopCatalogue | None = None
        self._split: str | None = None
        self._index: int | None = None
        self._goal_index: int | None = None
        self._session = _Session()
        self._expert_cache: tuple[int, str | None] | None = None

    @staticmethod
    def _resolve(data_dir: str | None, synthetic: bool | None) -> tuple[Path | None, str]:
        if synthetic is True:
            return None, "synthetic"
        if data_dir is not None:
            return Path(data_dir), "the data_dir argument"
        env = os.environ.get(WEBSHOP_DATA_ENV, "").strip()
        if env:
            return Path(env), f"${WEBSHOP_DATA_ENV}"
        if synthetic is False:
            raise DataNotFoundError(
                f"synthetic=False needs the real WebShop files: looked for a data_dir argument "
                f"and ${WEBSHOP_DATA_ENV}, found neither. {_HOW_TO_GET}"
            )
        return None, "synthetic"

    # ---- pickling: constructor args + the plain episode state; indexes are rebuilt lazily
    def __getstate__(self) -> dict[str, Any]:
        return {
            "args": dict(self._args),
            "resolved": "synthetic" if self._data_dir is None else str(self._data_dir),
            "split": self._split,
            "index": self._index,
            "goal_index": self._goal_index,
            "session": replace(self._session, options=dict(self._session.options)),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        args = dict(state["args"])
        # keep the catalogue resolved at construction, whatever $WEBSHOP_DATA says here
        resolved = state.get("resolved", "synthetic")
        if resolved == "synthetic":
            args.update(data_dir=None, synthetic=True)
        else:
            args.update(data_dir=resolved, synthetic=None)
        self.__init__(**args)  # type: ignore[misc]
        self._args = dict(state["args"])
        self._split = state["split"]
        self._index = state["index"]
        self._goal_index = state.get("goal_index")  # no catalogue load until it is used
        self._session = state["session"]

    # ---- catalogue
    @property
    def catalogue(self) -> WebShopCatalogue:
        """The loaded catalogue (loaded on first use, shared per process)."""
        if self._catalogue is None:
            self._catalogue = load_catalogue(
                self._data_dir,
                human_goals=self.human_goals,
                num_products=self.num_products,
                seed=self.seed,
                origin=self._origin,
            )
        return self._catalogue

    @property
    def is_synthetic(self) -> bool:
        """Whether the catalogue in use is the synthetic one (built in or written to files)."""
        return self._data_dir is None or self.catalogue.synthetic

    def splits(self) -> list[str]:
        return [s for s, (a, b) in self.catalogue.split_bounds.items() if b > a]

    def num_tasks(self, split: str) -> int:
        check_split(self, split, self.catalogue.source)
        a, b = self.catalogue.split_bounds[split]
        return b - a

    def _global_index(self, split: str, index: int) -> int:
        n = self.num_tasks(split)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
            raise ConfigError(
                f"goal index for split {split!r} must be an int in [0, {n}), got {index!r}"
            )
        return self.catalogue.split_bounds[split][0] + index

    # ---- TextTask API
    @property
    def goal(self) -> WebShopGoal:
        """The loaded goal."""
        if self._goal_index is None:
            raise ConfigError("no WebShop goal loaded: expected reset() before use, got none")
        return self.catalogue.goals[self._goal_index]

    def reset(self, split: str, index: int) -> TaskObservation:
        self._goal_index = self._global_index(split, index)
        self._split, self._index = split, index
        self._session = _Session()
        self._expert_cache = None
        return self._observation(valid=True)

    def step(self, command: str) -> TaskObservation:
        """Execute ``search[q]`` or ``click[x]`` (case-insensitive).

        ``valid`` is True for every admissible command (re-clicking a chosen option too);
        anything else leaves the page as it was and returns ``valid=False``, score 0.
        """
        if self._goal_index is None:
            raise ConfigError("WebShopTask.step before reset: expected reset(split, index) first")
        s = self._session
        parsed = parse_webshop_command(command)
        if s.done or parsed is None:
            return self._observation(valid=False)
        kind, arg = parsed
        if kind == "search":
            if s.page != "search" or not arg:
                return self._observation(valid=False)
            results = tuple(self.catalogue.search(arg))
            self._set(
                page="results", query=arg, results=results, page_num=1, searches=(*s.searches, arg)
            )
            return self._observation(valid=True)
        if arg not in self._clickables():
            return self._observation(valid=False)
        if arg == _BACK:
            self._set(page="search", results=(), page_num=1, asin=None, sub=None, options={})
        elif arg == _NEXT:
            self._set(page_num=s.page_num + 1)
        elif arg == _PREV:
            if s.page == "results":
                self._set(page_num=s.page_num - 1)
            elif s.page == "item":
                self._set(page="results", asin=None, options={})
            else:
                self._set(page="item", sub=None)
        elif s.page == "results":
            asin = next(a for a in self._page_results() if a.lower() == arg)
            self._set(page="item", asin=asin, options={})
        elif arg in _SUBPAGES:
            self._set(page="sub", sub=arg)
        elif arg == _BUY:
            assert s.asin is not None
            product = self.catalogue.by_asin[s.asin]
            score, breakdown = webshop_reward(
                self.goal, product, dict(s.options), self.catalogue.prices[s.asin]
            )
            self._set(done=True, score=score, breakdown=breakdown)
        else:  # an option value: record one value per option name
            product = self.catalogue.by_asin[s.asin or ""]
            for name, values in product.options.items():
                if arg in values:
                    self._set(options={**s.options, name: arg})
                    break
        return self._observation(valid=True)

    def _set(self, **changes: Any) -> None:
        self._session = replace(self._session, version=self._session.version + 1, **changes)

    # ---- pages
    def _page_results(self) -> tuple[str, ...]:
        s = self._session
        start = (s.page_num - 1) * RESULTS_PER_PAGE
        return s.results[start : start + RESULTS_PER_PAGE]

    def _clickables(self) -> list[str]:
        s = self._session
        if s.done or s.page == "search":
            return []
        if s.page == "results":
            out = [_BACK]
            if s.page_num > 1:
                out.append(_PREV)
            if s.page_num * RESULTS_PER_PAGE < len(s.results):
                out.append(_NEXT)
            out.extend(a.lower() for a in self._page_results())
            return out
        if s.page == "item":
            product = self.catalogue.by_asin[s.asin or ""]
            out = [_BACK, _PREV]
            for values in product.options.values():
                out.extend(v for v in values if v not in out)
            out.extend([*_SUBPAGES, _BUY])
            return out
        return [_BACK, _PREV]

    def _page_text(self) -> str:
        s = self._session
        if s.page == "search":
            return SEP.join(["WebShop", "Instruction:", self.goal.instruction_text, "Search"])
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
            for asin in self._page_results():
                p = self.catalogue.by_asin[asin]
                parts.extend([asin, p.title, p.price_tag])
            return SEP.join(parts)
        product = self.catalogue.by_asin[s.asin or ""]
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

    def _observation(self, *, valid: bool) -> TaskObservation:
        s = self._session
        commands = [SEARCH_TEMPLATE] if (s.page == "search" and not s.done) else []
        commands.extend(f"click[{c}]" for c in self._clickables())
        won = s.done and s.score >= 1.0 - 1e-9
        extra: dict[str, Any] = {
            "catalogue": "synthetic" if self.is_synthetic else "real",
            "synthetic": self.is_synthetic,
            "page": "done" if s.done else s.page,
            "goal_asin": self.goal.asin,
        }
        if s.done:
            extra["purchased_asin"] = s.asin
            extra["purchased_options"] = dict(s.options)
            extra["reward_breakdown"] = dict(s.breakdown or {})
        return TaskObservation(
            text=self._page_text(),
            admissible_commands=commands,
            won=won,
            done=s.done,
            score=float(s.score) if s.done and valid else 0.0,
            valid=valid,
            extra=extra,
        )

    # ---- expert
    def _expert_queries(self) -> list[str]:
        goal = self.goal
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

    def _expert_option_clicks(self, product: WebShopProduct) -> list[str]:
        """The option values to click for the goal, in page order (not yet chosen)."""
        goal = self.goal
        chosen = self._session.options
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
                    sim = fuzz.token_set_ratio(
                        normalize_color(v), target, processor=default_process
                    )
                    if sim > 85 and (best is None or sim > best[0]):
                        best = (sim, name, v)
            if best is not None and chosen.get(best[1]) != best[2] and best[2] not in clicks:
                clicks.append(best[2])
        return clicks

    def expert_command(self) -> str | None:
        """Search with the goal's words; page to the target ASIN and click it (back to
        search with the product title, then query + title, when it is not among the hits);
        click each goal option value; then ``click[buy now]``. None once the episode is over.
        When every query misses, it buys the first hit (best effort; never on the synthetic
        catalogue)."""
        s = self._session
        if self._expert_cache is not None and self._expert_cache[0] == s.version:
            return self._expert_cache[1]
        command = self._expert_uncached()
        self._expert_cache = (s.version, command)
        return command

    def _expert_uncached(self) -> str | None:
        s = self._session
        if s.done:
            return None
        target = self.goal.asin
        queries = self._expert_queries()
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
                return f"click[{_NEXT}]" if pos > s.page_num else f"click[{_PREV}]"
            if exhausted and s.results:
                if s.page_num > 1:
                    return f"click[{_PREV}]"
                return f"click[{s.results[0].lower()}]"
            return f"click[{_BACK}]"
        if s.page == "sub":
            return f"click[{_PREV}]"
        # item page
        if s.asin != target and not (exhausted and target not in s.results):
            return f"click[{_PREV}]"
        product = self.catalogue.by_asin[s.asin or ""]
        clicks = self._expert_option_clicks(product)
        if clicks:
            return f"click[{clicks[0]}]"
        return f"click[{_BUY}]"

    @property
    def task_id(self) -> str:
        prefix = "webshop-synthetic" if self.is_synthetic else "webshop"
        goals = "human" if self.human_goals else "goal"
        return f"{prefix}/{goals}-{self._goal_index if self._goal_index is not None else 'none'}"

    @property
    def task_type(self) -> str:
        goal = self.goal
        first = goal.product_category.split("›")[0].strip() or goal.category
        slug = re.sub(r"[^a-z0-9]+", "_", first.lower()).strip("_") or "webshop"
        return f"synthetic/{slug}" if self.is_synthetic else slug

    @property
    def description(self) -> str:
        return self.goal.instruction_text

    def step_kind(self, command: str) -> str:
        parsed = parse_webshop_command(command)
        return "search" if parsed is not None and parsed[0] == "search" else "click"

    def pending_step_kind(self) -> str | None:
        if self._session.done:
            return None
        return "search" if self._session.page == "search" else "click"

    def forced_high(self, kind: str | None) -> bool:
        return self.force_high_on_search and kind == "search"
