"""One episode's page state and the command language (``search[q]`` / ``click[x]``).

Commands are case-insensitive and their arguments are lower-cased, as in the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BACK",
    "BUY",
    "NEXT",
    "PREV",
    "RESULTS_PER_PAGE",
    "SEARCH_TEMPLATE",
    "SUBPAGES",
    "Session",
    "page_results",
    "parse_webshop_command",
]

#: the admissible-command entry that stands for ``search[<any query>]``
SEARCH_TEMPLATE = "search[...]"
#: results shown per page (of the top-50 hits)
RESULTS_PER_PAGE = 10

_COMMAND_RE = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


def parse_webshop_command(command: str) -> tuple[str, str] | None:
    """``("search"|"click", lower-cased stripped argument)`` or None when malformed."""
    m = _COMMAND_RE.match(command or "")
    if m is None:
        return None
    return m.group(1).lower(), " ".join(m.group(2).split()).lower()


@dataclass
class Session:
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


#: the clickable buttons (lower-cased, as commands name them)
BACK = "back to search"
PREV = "< prev"
NEXT = "next >"
BUY = "buy now"
SUBPAGES = ("description", "features", "reviews")


def page_results(session: Session) -> tuple[str, ...]:
    """The ASINs listed on the session's current results page."""
    start = (session.page_num - 1) * RESULTS_PER_PAGE
    return session.results[start : start + RESULTS_PER_PAGE]
