"""WebShop data model and purchase reward (a re-implementation of the benchmark's scoring).

The reward of buying ``product`` with ``chosen_options`` at ``price`` for ``goal`` is::

    R = r_type * (N_att + N_opt + 1[price <= goal.price_upper])
               / (|goal.attributes| + |goal options| + 1)

* ``N_att``: goal attributes matched. A goal attribute counts when its fuzzy token-set
  similarity (rapidfuzz ``token_set_ratio`` with default processing, the same scorer as the
  original's ``thefuzz``) to one of the product's attributes exceeds 85, else when it occurs
  verbatim in the lower-cased title, bullet points or description.
* ``N_opt``: goal option *values* matched by a chosen option value (both colour-normalised,
  similarity > 85). The original compares against ``goal_options.items()`` (name/value
  tuples) for synthetic goals; comparing values is what it intends and is used here.
* ``r_type``: 1.0, reduced to 0.5 unless the product's ``query`` equals the goal's, or at
  least two category path segments (``"A › B › C"``) are shared, or the title score exceeds
  0.2; then 0.1 when the title score is below 0.1, and 0.0 when it is 0. The title score is
  the share of the goal title's nouns and proper nouns found among the bought title's (0.2
  when the goal title has none).

Noun extraction: spaCy's ``en_core_web_sm`` pipeline (POS tags NOUN/PROPN, as the original)
when that model package is importable, else a documented heuristic (:func:`heuristic_nouns`:
alphabetic tokens minus English stop words, colour words and a list of common adjectives
and units). :func:`noun_backend_name` says which one is active; the reward breakdown names it
under ``"noun_backend"``. The official spaCy model is not published on PyPI, so on a machine
provisioned from PyPI alone the heuristic is the active backend.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

__all__ = [
    "COLOR_SET",
    "FUZZY_THRESHOLD",
    "WebShopGoal",
    "WebShopProduct",
    "attribute_reward",
    "get_noun_extractor",
    "heuristic_nouns",
    "normalize_color",
    "noun_backend_name",
    "option_reward",
    "type_reward",
    "webshop_reward",
]

#: fuzzy similarity (0-100) a goal attribute/option must exceed to count as matched
FUZZY_THRESHOLD = 85.0

NounExtractor = Callable[[str], list[str]]


@dataclass(frozen=True)
class WebShopProduct:
    """One catalogue product after loading (the fields the pages and the reward read).

    Attributes:
        asin: product id (upper case, at most 10 characters).
        title: the record's ``name``.
        description: the record's ``full_description``.
        bullets: the record's ``small_description`` (always a list).
        price_tag: the price as shown ("$12.99", "$12.99 to $15.99", "$100.0" when missing).
        pricing: the parsed price bounds (one value, or low and high of a range).
        options: option name (lower case) -> option values (lower case, "/" -> " | ").
        attributes: attributes from ``items_ins_v2`` (``["DUMMY_ATTR"]`` when absent).
        query, category, product_category: the record's search query, category and
            ``"A › B › C"`` category path.
        rating: the shown rating ("N.A." when absent).
    """

    asin: str
    title: str
    description: str
    bullets: tuple[str, ...]
    price_tag: str
    pricing: tuple[float, ...]
    options: Mapping[str, tuple[str, ...]]
    attributes: tuple[str, ...]
    query: str = ""
    category: str = ""
    product_category: str = ""
    rating: str = "N.A."


@dataclass(frozen=True)
class WebShopGoal:
    """One shopping goal (an instruction plus what the reward checks).

    ``goal_options`` is a mapping option name -> value for synthetic goals, or a sequence
    of option values for human goals (``instruction_options``).
    """

    asin: str
    instruction_text: str
    attributes: tuple[str, ...]
    goal_options: Mapping[str, str] | tuple[str, ...]
    price_upper: float
    query: str = ""
    category: str = ""
    product_category: str = ""
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def option_values(self) -> list[str]:
        """The goal's option values, whichever form ``goal_options`` has."""
        if isinstance(self.goal_options, Mapping):
            return [str(v) for v in self.goal_options.values()]
        return [str(v) for v in self.goal_options]


# Colour words; ``normalize_color`` maps a string to the first of these it contains.
COLOR_SET: tuple[str, ...] = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black",
    "blue", "blush", "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel",
    "champagne", "charcoal", "cheetah", "chestnut", "chocolate", "christmas", "coffee",
    "cognac", "copper", "coral", "cranberry", "cream", "crystal", "dark", "denim", "eggplant",
    "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite", "grass", "gray",
    "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender", "lemon",
    "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight",
    "mint", "mocha", "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive",
    "orange", "peach", "pewter", "pink", "plum", "purple", "rainbow", "red", "rose", "royal",
    "rust", "sand", "sapphire", "seashell", "silver", "skull", "slate", "steel", "stone",
    "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise", "violet", "walnut",
    "wheat", "white", "wine", "yellow",
)  # fmt: skip


def normalize_color(text: str) -> str:
    """The first colour of :data:`COLOR_SET` contained in ``text``, else ``text`` unchanged."""
    for color in COLOR_SET:
        if color in text:
            return color
    return text


# ---------------------------------------------------------------- noun extraction

_STOP_WORDS_TEXT = """a about above after again against all am an and any are as at be because been before
    being below between both but by can did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our ours out over own
    same she should so some such than that the their theirs them then there these they this
    those through to too under until up very was we were what when where which while who whom
    why will with you your yours pack count piece set inch inches ft oz fl ounce ounces pound
    pounds lb lbs ml cm mm x pcs pc"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_ADJECTIVES_TEXT = """new best premium natural organic soft large small medium big mini extra long short
    light heavy free high low fast slow quick easy great good perfect classic modern simple
    portable durable lightweight waterproof wireless compatible adjustable comfortable cute
    professional original ultra super pure fresh dark bright deep thin thick slim wide full
    double single hot cold warm cool multi universal non anti fit"""
_ADJECTIVES = frozenset(_ADJECTIVES_TEXT.split())
_TOKEN_RE = re.compile(r"[a-z][a-z'&-]*[a-z]|[a-z]")


def heuristic_nouns(text: str) -> list[str]:
    """Noun-like tokens of ``text`` without a POS tagger (the fallback noun extractor).

    Lower-cased alphabetic tokens (hyphenated words kept whole), minus English stop words,
    size units, colour words (:data:`COLOR_SET`) and a short list of common adjectives; also
    drops tokens ending in typical adjective suffixes (-able, -ful, -less, -ous, -ive).
    """
    out: list[str] = []
    for token in _TOKEN_RE.findall(text.lower()):
        if len(token) < 2 or token in _STOP_WORDS or token in _ADJECTIVES:
            continue
        if token in COLOR_SET:
            continue
        if token.endswith(("able", "ible", "ful", "less", "ous", "ive")):
            continue
        out.append(token)
    return out


_SPACY_MODEL = "en_core_web_sm"
_NOUN_EXTRACTOR: tuple[str, NounExtractor] | None = None


def _spacy_extractor() -> NounExtractor | None:
    if importlib.util.find_spec(_SPACY_MODEL) is None:
        return None
    try:
        import spacy

        nlp = spacy.load(_SPACY_MODEL, disable=["parser", "ner", "lemmatizer"])
    except Exception:
        return None

    def nouns(text: str) -> list[str]:
        return [t.text.lower() for t in nlp(text) if t.pos_ in ("NOUN", "PROPN")]

    return nouns


def get_noun_extractor() -> tuple[str, NounExtractor]:
    """``(name, extractor)`` of the active noun backend: ``"spacy:en_core_web_sm"`` when that
    model is installed, else ``"heuristic"`` (:func:`heuristic_nouns`). Cached per process."""
    global _NOUN_EXTRACTOR
    if _NOUN_EXTRACTOR is None:
        spacy_nouns = _spacy_extractor()
        if spacy_nouns is not None:
            _NOUN_EXTRACTOR = (f"spacy:{_SPACY_MODEL}", spacy_nouns)
        else:
            _NOUN_EXTRACTOR = ("heuristic", heuristic_nouns)
    return _NOUN_EXTRACTOR


def noun_backend_name() -> str:
    """Name of the active noun backend (``"spacy:en_core_web_sm"`` or ``"heuristic"``)."""
    return get_noun_extractor()[0]


# ---------------------------------------------------------------- reward parts


def _similar(a: str, b: str) -> bool:
    return fuzz.token_set_ratio(a, b, processor=default_process) > FUZZY_THRESHOLD


def type_reward(
    product: WebShopProduct, goal: WebShopGoal, nouns: NounExtractor | None = None
) -> dict[str, Any]:
    """``r_type`` and its parts: ``query_match``, ``category_match``, ``title_score``."""
    extract = nouns if nouns is not None else get_noun_extractor()[1]
    query_match = bool(product.query) and product.query == goal.query
    bought_cats = {x.strip() for x in product.product_category.split("›") if x.strip()}
    goal_cats = {x.strip() for x in goal.product_category.split("›") if x.strip()}
    category_match = len(bought_cats & goal_cats) >= 2
    desired = set(extract(goal.name))
    bought = set(extract(product.title))
    title_score = 0.2 if not desired else len(desired & bought) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {
        "r_type": r_type,
        "query_match": query_match,
        "category_match": category_match,
        "title_score": title_score,
    }


def attribute_reward(product: WebShopProduct, goal: WebShopGoal) -> tuple[float, int]:
    """``(r_att, N_att)``: share and count of goal attributes the product has."""
    title = product.title.lower()
    bullets = " ".join(product.bullets).lower()
    description = product.description.lower()
    matches = 0
    for g_attr in goal.attributes:
        # fuzzy match to a product attribute, else a verbatim mention in the text
        in_text = g_attr in title or g_attr in bullets or g_attr in description
        if in_text or any(_similar(p_attr, g_attr) for p_attr in product.attributes):
            matches += 1
    r_att = matches / len(goal.attributes) if goal.attributes else 0.0
    return r_att, matches


def option_reward(
    chosen_values: Sequence[str], goal_values: Sequence[str]
) -> tuple[float | None, int]:
    """``(r_option, N_opt)``: share (None without goal options) and count of goal option
    values matched by a chosen value, both colour-normalised first."""
    chosen = [normalize_color(str(o)) for o in chosen_values]
    wanted = [normalize_color(str(o)) for o in goal_values]
    matches = sum(1 for g in wanted if any(_similar(p, g) for p in chosen))
    return (matches / len(wanted) if wanted else None), matches


def webshop_reward(
    goal: WebShopGoal,
    product: WebShopProduct,
    chosen_options: Mapping[str, str],
    price: float,
    *,
    nouns: NounExtractor | None = None,
) -> tuple[float, dict[str, Any]]:
    """Score of buying ``product`` (options ``chosen_options``: name -> value) at ``price``.

    Returns ``(score, breakdown)`` with ``score`` in [0, 1]; ``breakdown`` holds
    ``r_type``, ``query_match``, ``category_match``, ``title_score``, ``r_att``,
    ``num_attr_matches``, ``r_option``, ``num_option_matches``, ``r_price`` and
    ``noun_backend``. ``nouns`` overrides the noun extractor (tests pin the heuristic).
    """
    backend = "custom" if nouns is not None else noun_backend_name()
    type_parts = type_reward(product, goal, nouns)
    r_price = price <= goal.price_upper
    r_att, n_att = attribute_reward(product, goal)
    goal_values = goal.option_values()
    r_option, n_opt = option_reward(list(chosen_options.values()), goal_values)
    total = (n_att + n_opt + int(r_price)) / (len(goal.attributes) + len(goal_values) + 1)
    score = float(total * type_parts["r_type"])
    breakdown: dict[str, Any] = {
        **type_parts,
        "r_att": r_att,
        "num_attr_matches": n_att,
        "r_option": r_option,
        "num_option_matches": n_opt,
        "r_price": r_price,
        "noun_backend": backend,
    }
    return score, breakdown
