"""The WebShop task: goals of a catalogue played as :class:`TextTask` games.

A command that is not admissible changes nothing and returns ``valid=False`` with score 0.
The reward (:func:`precision_gym.tasks.webshop_reward.webshop_reward`) is given at
``click[buy now]``, which ends the episode; ``won`` iff the score is 1.0.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from precision_gym.error import ConfigError, DataNotFoundError
from precision_gym.tasks.base import TaskObservation, TextTask, check_split
from precision_gym.tasks.webshop.catalogue import WebShopCatalogue, load_catalogue
from precision_gym.tasks.webshop.data import HOW_TO_GET, WEBSHOP_DATA_ENV, require_files
from precision_gym.tasks.webshop.expert import expert_command
from precision_gym.tasks.webshop.pages import clickables, observation
from precision_gym.tasks.webshop.session import (
    BACK,
    BUY,
    NEXT,
    PREV,
    SUBPAGES,
    Session,
    page_results,
    parse_webshop_command,
)
from precision_gym.tasks.webshop_reward import WebShopGoal, webshop_reward

__all__ = ["WebShopTask"]


class WebShopTask(TextTask):
    """WebShop goals as :class:`TextTask` games (the engine: :mod:`precision_gym.tasks.webshop`).

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
            require_files(self._data_dir, self._origin, self.human_goals)
        self._catalogue: WebShopCatalogue | None = None
        self._split: str | None = None
        self._index: int | None = None
        self._goal_index: int | None = None
        self._session = Session()
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
                f"and ${WEBSHOP_DATA_ENV}, found neither. {HOW_TO_GET}"
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
        self._session = Session()
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
        if arg not in clickables(s, self.catalogue):
            return self._observation(valid=False)
        if arg == BACK:
            self._set(page="search", results=(), page_num=1, asin=None, sub=None, options={})
        elif arg == NEXT:
            self._set(page_num=s.page_num + 1)
        elif arg == PREV:
            if s.page == "results":
                self._set(page_num=s.page_num - 1)
            elif s.page == "item":
                self._set(page="results", asin=None, options={})
            else:
                self._set(page="item", sub=None)
        elif s.page == "results":
            asin = next(a for a in page_results(s) if a.lower() == arg)
            self._set(page="item", asin=asin, options={})
        elif arg in SUBPAGES:
            self._set(page="sub", sub=arg)
        elif arg == BUY:
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

    def _observation(self, *, valid: bool) -> TaskObservation:
        return observation(
            self._session, self.catalogue, self.goal, synthetic=self.is_synthetic, valid=valid
        )

    # ---- expert
    def expert_command(self) -> str | None:
        """The scripted shopper's next command (:func:`~.expert.expert_command`), cached per
        page state."""
        s = self._session
        if self._expert_cache is not None and self._expert_cache[0] == s.version:
            return self._expert_cache[1]
        command = expert_command(s, self.goal, self.catalogue)
        self._expert_cache = (s.version, command)
        return command

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
