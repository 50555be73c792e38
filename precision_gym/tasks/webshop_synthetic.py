"""A small, deterministic, **synthetic** WebShop catalogue in the real files' schema.

The real WebShop product file (``items_shuffle_1000.json``) is not redistributable here, so
tests and demos use this synthetic catalogue: 48 made-up products of 16 product types in 5
categories (3 products per type, which share the type's attribute pool so that search and
the reward have near misses), with options (size / colour / scent / flavour, some with
``"/"`` in a value), fixed prices, price ranges and missing prices, bullets, descriptions,
``"A › B › C"`` category paths, attributes and instructions. Three malformed records (an
ASIN ``"nan"``, an over-long ASIN and a duplicate ASIN) exercise the loader's filtering.

Every record carries ``"synthetic": true`` so the catalogue stays labelled synthetic when it
is written to files and read back through the real-file loader. Nothing here is WebShop data.

:func:`build_synthetic_catalogue` returns the three structures; :func:`write_synthetic_catalogue`
writes them as ``items_shuffle_1000.json``, ``items_ins_v2_1000.json`` and
``items_human_ins.json`` (human-style instructions, also synthetic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SYNTHETIC_MARKER",
    "build_synthetic_catalogue",
    "is_synthetic_record",
    "write_synthetic_catalogue",
]

#: key set to True on every synthetic product record
SYNTHETIC_MARKER = "synthetic"


@dataclass(frozen=True)
class _Type:
    category: str
    path: str
    query: str
    noun: str
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    base_price: float


_TYPES: tuple[_Type, ...] = (
    _Type(
        "beauty",
        "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
        "shampoo",
        "Shampoo",
        ("sulfate free", "paraben free", "dry hair", "argan oil", "color safe"),
        {"size": ("8 fl oz", "16 fl oz", "32 fl oz"), "scent": ("citrus", "lavender")},
        12.0,
    ),
    _Type(
        "beauty",
        "Beauty & Personal Care › Makeup › Lips › Lipstick",
        "lipstick",
        "Lipstick",
        ("long lasting", "cruelty free", "matte finish", "vegan formula", "moisturizing"),
        {"color": ("ruby red", "nude pink", "plum")},
        9.0,
    ),
    _Type(
        "beauty",
        "Beauty & Personal Care › Skin Care › Body › Lotions",
        "body lotion",
        "Body Lotion",
        ("dry skin", "fragrance free", "shea butter", "non greasy", "sensitive skin"),
        {"size": ("6.8 fl oz", "13.5 fl oz")},
        14.0,
    ),
    _Type(
        "clothing",
        "Clothing, Shoes & Jewelry › Men › Clothing › Shirts › T-Shirts",
        "men t-shirt",
        "T-Shirt",
        ("cotton fabric", "machine wash", "short sleeve", "relaxed fit", "moisture wicking"),
        {"color": ("black", "navy blue", "heather grey"), "size": ("small", "medium", "large")},
        16.0,
    ),
    _Type(
        "clothing",
        "Clothing, Shoes & Jewelry › Women › Shoes › Athletic › Running",
        "women running shoes",
        "Running Shoes",
        ("rubber sole", "lightweight", "non slip", "breathable mesh", "arch support"),
        {"size": ("7", "8", "9"), "color": ("Black/White", "Pink")},
        48.0,
    ),
    _Type(
        "clothing",
        "Clothing, Shoes & Jewelry › Women › Clothing › Fashion Hoodies & Sweatshirts",
        "women hoodie",
        "Hoodie",
        ("fleece lined", "long sleeve", "drawstring closure", "machine wash", "kangaroo pocket"),
        {"color": ("burgundy", "olive green"), "size": ("medium", "x-large")},
        29.0,
    ),
    _Type(
        "electronics",
        "Electronics › Headphones, Earbuds & Accessories › Headphones › Over-Ear Headphones",
        "wireless headphones",
        "Headphones",
        ("noise cancelling", "bluetooth", "long battery life", "foldable", "built-in microphone"),
        {"color": ("black", "silver")},
        59.0,
    ),
    _Type(
        "electronics",
        "Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases",
        "phone case",
        "Phone Case",
        ("shockproof", "slim fit", "wireless charging", "scratch resistant", "raised edges"),
        {"color": ("clear", "midnight blue", "rose gold")},
        11.0,
    ),
    _Type(
        "electronics",
        "Electronics › Computers & Accessories › Cables & Accessories › USB Cables",
        "usb c cable",
        "USB C Cable",
        ("fast charging", "braided nylon", "high speed", "data transfer", "tangle free"),
        {"size": ("3 ft", "6 ft", "10 ft")},
        8.0,
    ),
    _Type(
        "grocery",
        "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
        "whole bean coffee",
        "Whole Bean Coffee",
        ("medium roast", "dark roast", "fair trade", "usda organic", "single origin"),
        {"size": ("12 ounce (pack of 1)", "2 pound (pack of 1)")},
        13.0,
    ),
    _Type(
        "grocery",
        "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green",
        "green tea bags",
        "Green Tea Bags",
        ("gluten free", "non gmo", "usda organic", "sugar free", "individually wrapped"),
        {"flavor name": ("jasmine", "mint", "original"), "size": ("20 count", "100 count")},
        7.0,
    ),
    _Type(
        "grocery",
        "Grocery & Gourmet Food › Snack Foods › Bars › Protein Bars",
        "protein bars",
        "Protein Bars",
        ("high protein", "gluten free", "low sugar", "keto friendly", "plant based"),
        {"flavor name": ("chocolate peanut butter", "vanilla almond"), "size": ("12 count",)},
        21.0,
    ),
    _Type(
        "home",
        "Home & Kitchen › Bath › Towels › Bath Towels",
        "bath towel set",
        "Bath Towel Set",
        ("quick dry", "highly absorbent", "turkish cotton", "machine washable", "oeko-tex"),
        {"color": ("white", "charcoal gray", "sage green"), "size": ("4 piece", "6 piece")},
        26.0,
    ),
    _Type(
        "home",
        "Home & Kitchen › Bedding › Decorative Pillows, Inserts & Covers › Throw Pillow Covers",
        "throw pillow covers",
        "Throw Pillow Covers",
        ("double sided", "hidden zipper", "living room", "soft velvet", "machine wash"),
        {"color": ("mustard yellow", "teal", "beige"), "size": ("18 x 18 inch", "20 x 20 inch")},
        15.0,
    ),
    _Type(
        "home",
        "Home & Kitchen › Home Décor › Candles & Holders › Candles › Jar Candles",
        "scented candle",
        "Scented Candle",
        ("soy wax", "long burning", "lead free", "cotton wick", "gift ready"),
        {"scent": ("vanilla", "Sea Salt/Sage", "eucalyptus")},
        18.0,
    ),
    _Type(
        "home",
        "Tools & Home Improvement › Lighting & Ceiling Fans › Lamps & Shades › Desk Lamps",
        "led desk lamp",
        "LED Desk Lamp",
        ("dimmable", "usb charging port", "eye caring", "touch control", "energy saving"),
        {"color": ("white", "black")},
        33.0,
    ),
)

_BRANDS = (
    "Lumora", "Brisko", "Vantelle", "Orrin", "Quillby", "Tamsa", "Hollet", "Zephra",
    "Marlowe", "Kestro", "Pellam", "Ardeno", "Fennick", "Sorvy", "Calloway", "Dunmere",
    "Everholt", "Gryffe", "Ivelle", "Jorvik", "Lanstead", "Nortiq", "Obrey", "Rainsford",
)  # fmt: skip

_INSTRUCTIONS = (
    "i need {a0} and {a1} {q}",
    "find me {a0} {q} with {a1}",
    "i am looking for a {q} that is {a0} and has {a1}",
)
_HUMAN_INSTRUCTIONS = (
    "im looking for {q} which is {a0}, i want it in {opts}",
    "can you get me a {a1} {q}? i'd like {opts}",
    "i want to buy {q}, it should be {a0} and {a1}",
)


def _asin(n: int) -> str:
    return f"B0SYN{n:05d}"


def _title(word: str) -> str:
    return " ".join(w if w.isupper() else w.capitalize() for w in word.split())


def build_synthetic_catalogue() -> tuple[
    list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]
]:
    """The synthetic catalogue as ``(items_shuffle, items_ins_v2, items_human_ins)``.

    ``items_shuffle`` is a list of product records (keys ``asin``, ``name``,
    ``full_description``, ``small_description``, ``pricing``, ``customization_options``,
    ``product_category``, ``query``, ``category``, ``average_rating``, ``images`` and
    ``synthetic``), including three malformed records the loader must drop;
    ``items_ins_v2`` maps ASIN -> ``{"attributes", "instruction"?,
    "instruction_attributes"?}``; ``items_human_ins`` maps ASIN -> list of human-style
    goal records (``instruction``, ``instruction_attributes``, ``instruction_options``).
    Deterministic: the same structures on every call.
    """
    products: list[dict[str, Any]] = []
    ins: dict[str, dict[str, Any]] = {}
    human: dict[str, list[dict[str, Any]]] = {}
    n = 0
    for t_idx, ptype in enumerate(_TYPES):
        pool = ptype.attributes
        for k in range(3):
            n += 1
            asin = _asin(n)
            brand = _BRANDS[(t_idx * 3 + k) % len(_BRANDS)]
            attrs = [pool[(k + j) % len(pool)] for j in range(3)]
            # product k=0 has every option and value, k=1 the first option's first two
            # values, k=2 no options
            option_names = list(ptype.options)
            if k == 0:
                opts = {name: list(ptype.options[name]) for name in option_names}
            elif k == 1:
                opts = {option_names[0]: list(ptype.options[option_names[0]][:2])}
            else:
                opts = {}
            customization: dict[str, Any] | str = (
                {
                    name.title(): [{"value": v, "image": None} for v in values]
                    for name, values in opts.items()
                }
                if opts
                else ""
            )
            base = ptype.base_price * (1.0 + 0.35 * k)
            if (t_idx + k) % 3 == 1:
                pricing = f"${base:.2f} - ${base * 1.4:.2f}"
            elif t_idx % 5 == 2 and k == 2:
                pricing = ""  # missing price -> $100
            else:
                pricing = f"${base:.2f}"
            name = f"{brand} {ptype.noun} - {_title(attrs[0])}, {_title(attrs[1])}"
            noun = ptype.noun.lower()
            description = (
                f"The {brand} {noun} is a synthetic catalogue item. It is {attrs[0]} and "
                f"{attrs[1]}, with {attrs[2]} for everyday use. Made by {brand}."
            )
            bullets = [
                f"{attrs[0].upper()}: a {noun} designed around {attrs[0]}.",
                f"{attrs[1].capitalize()} for daily comfort and value.",
                f"Includes {attrs[2]}; synthetic product for testing.",
            ]
            products.append(
                {
                    "asin": asin,
                    "name": name,
                    "full_description": description,
                    "small_description": bullets,
                    "pricing": pricing,
                    "customization_options": customization,
                    "product_category": ptype.path,
                    "query": ptype.query,
                    "category": ptype.category,
                    "average_rating": f"{3.6 + 0.4 * k:.1f} out of 5 stars",
                    "images": [""],
                    SYNTHETIC_MARKER: True,
                }
            )
            entry: dict[str, Any] = {"attributes": list(attrs)}
            if n % 8 != 0:  # a few products carry no instruction, as in the real file
                template = _INSTRUCTIONS[(t_idx + k) % len(_INSTRUCTIONS)]
                entry["instruction"] = template.format(a0=attrs[0], a1=attrs[1], q=ptype.query)
                entry["instruction_attributes"] = [attrs[0], attrs[1]]
            ins[asin] = entry
            if n % 4 != 3:
                values = [
                    v.strip().replace("/", " | ").lower() for v in (vs[0] for vs in opts.values())
                ]
                template = _HUMAN_INSTRUCTIONS[(t_idx + 2 * k) % len(_HUMAN_INSTRUCTIONS)]
                human[asin] = [
                    {
                        "asin": asin,
                        "instruction": template.format(
                            a0=attrs[0],
                            a1=attrs[1],
                            q=ptype.query,
                            opts=" and ".join(values) if values else "any style",
                        ),
                        "instruction_attributes": [attrs[0], attrs[1]],
                        "instruction_options": values,
                    }
                ]
    # malformed records the loader drops: ASIN "nan", an over-long ASIN, a duplicate ASIN
    bad = dict(products[0], name="Synthetic Broken Record (nan asin)", asin="nan")
    long_asin = dict(products[1], name="Synthetic Broken Record (long asin)", asin="B0SYN0000099")
    duplicate = dict(products[2], name="Synthetic Duplicate Record")
    products.insert(5, bad)
    products.insert(11, long_asin)
    products.append(duplicate)
    return products, ins, human


def is_synthetic_record(record: dict[str, Any]) -> bool:
    """Whether a product record was made by this module."""
    return bool(record.get(SYNTHETIC_MARKER))


def write_synthetic_catalogue(folder: str | Path, *, human: bool = True) -> dict[str, Path]:
    """Write the synthetic catalogue as the real file names into ``folder`` (created).

    Returns file kind -> path for ``"items_shuffle"``, ``"items_ins"`` and (when ``human``)
    ``"items_human_ins"``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    products, ins, human_ins = build_synthetic_catalogue()
    paths = {
        "items_shuffle": out / "items_shuffle_1000.json",
        "items_ins": out / "items_ins_v2_1000.json",
    }
    paths["items_shuffle"].write_text(json.dumps(products, indent=1), encoding="utf-8")
    paths["items_ins"].write_text(json.dumps(ins, indent=1), encoding="utf-8")
    if human:
        paths["items_human_ins"] = out / "items_human_ins.json"
        paths["items_human_ins"].write_text(json.dumps(human_ins, indent=1), encoding="utf-8")
    return paths
