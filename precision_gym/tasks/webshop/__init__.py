"""WebShop as a text task: catalogue loading, BM25 search, pages, goals and the expert.

One module per concept: :mod:`.data` (the files), :mod:`.products`, :mod:`.goals`,
:mod:`.splits`, :mod:`.search`, :mod:`.catalogue` (loading, cached per process),
:mod:`.session` (page state, commands), :mod:`.pages`, :mod:`.expert` and :mod:`.task`
(:class:`WebShopTask`). Everything is re-exported here.

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

from precision_gym.tasks.webshop import catalogue as _catalogue
from precision_gym.tasks.webshop import data as _data
from precision_gym.tasks.webshop import goals as _goals
from precision_gym.tasks.webshop import session as _session
from precision_gym.tasks.webshop.catalogue import WebShopCatalogue, load_catalogue
from precision_gym.tasks.webshop.data import (
    FILE_NAMES,
    HOW_TO_GET,
    WEBSHOP_DATA_ENV,
    WEBSHOP_FILES,
    check_schema,
    find_file,
    read_json,
    require_files,
    verify_webshop_files,
)
from precision_gym.tasks.webshop.goals import (
    NO_PRICE_BOUND,
    PRICE_RANGE,
    build_human_goals,
    build_synthetic_goals,
)
from precision_gym.tasks.webshop.pages import SEP
from precision_gym.tasks.webshop.products import build_products, parse_options, parse_pricing
from precision_gym.tasks.webshop.search import TOP_K, option_text, tokenise
from precision_gym.tasks.webshop.session import (
    RESULTS_PER_PAGE,
    SEARCH_TEMPLATE,
    Session,
    parse_webshop_command,
)
from precision_gym.tasks.webshop.splits import split_bounds
from precision_gym.tasks.webshop.task import WebShopTask
from precision_gym.tasks.webshop_reward import (
    WebShopGoal,
    WebShopProduct,
    normalize_color,
    webshop_reward,
)

__all__ = [
    "FILE_NAMES",
    "HOW_TO_GET",
    "NO_PRICE_BOUND",
    "PRICE_RANGE",
    "RESULTS_PER_PAGE",
    "SEARCH_TEMPLATE",
    "SEP",
    "TOP_K",
    "WEBSHOP_DATA_ENV",
    "WEBSHOP_FILES",
    "Session",
    "WebShopCatalogue",
    "WebShopGoal",
    "WebShopProduct",
    "WebShopTask",
    "build_human_goals",
    "build_products",
    "build_synthetic_goals",
    "check_schema",
    "find_file",
    "load_catalogue",
    "normalize_color",
    "option_text",
    "parse_options",
    "parse_pricing",
    "parse_webshop_command",
    "read_json",
    "require_files",
    "split_bounds",
    "tokenise",
    "verify_webshop_files",
    "webshop_reward",
]

# the names this module had before it became a package (private ones included)
_CACHE = _catalogue._CACHE
_CACHE_LOCK = _catalogue._CACHE_LOCK
_build_catalogue = _catalogue._build_catalogue
_sha256 = _data._sha256
_goal = _goals._goal
_price_bound = _goals._price_bound
_BACK, _PREV, _NEXT, _BUY = _session.BACK, _session.PREV, _session.NEXT, _session.BUY
_SUBPAGES = _session.SUBPAGES
_FILE_NAMES = FILE_NAMES
_HOW_TO_GET = HOW_TO_GET
_find_file = find_file
_read_json = read_json
_require_files = require_files
_check_schema = check_schema
_parse_pricing = parse_pricing
_parse_options = parse_options
_build_products = build_products
_tokenise = tokenise
_option_text = option_text
_synthetic_goals = build_synthetic_goals
_human_goals = build_human_goals
_Session = Session
