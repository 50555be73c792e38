"""WebShop text engine on the synthetic catalogue (built in and written to files)."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from pathlib import Path

import pytest

from precision_gym.error import ConfigError, CorruptDataError, DataNotFoundError
from precision_gym.tasks.base import TextTask
from precision_gym.tasks.webshop import (
    SEARCH_TEMPLATE,
    WEBSHOP_DATA_ENV,
    WebShopTask,
    _parse_pricing,
    load_catalogue,
    parse_webshop_command,
    verify_webshop_files,
)
from precision_gym.tasks.webshop_synthetic import (
    build_synthetic_catalogue,
    write_synthetic_catalogue,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "webshop"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBSHOP_DATA_ENV, raising=False)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("webshop_synthetic")
    write_synthetic_catalogue(folder)
    return folder


def _play_expert(task: WebShopTask, split: str, index: int, max_steps: int = 30):
    obs = task.reset(split, index)
    commands = []
    for _ in range(max_steps):
        command = task.expert_command()
        if command is None:
            break
        commands.append(command)
        obs = task.step(command)
        assert obs.valid, (command, obs.text)
    return obs, commands


# ---------------------------------------------------------------- synthetic catalogue


def test_synthetic_catalogue_schema_and_determinism() -> None:
    products, ins, human = build_synthetic_catalogue()
    assert (products, ins, human) == build_synthetic_catalogue()
    assert 40 <= len(products) <= 60
    keys = {
        "asin",
        "name",
        "full_description",
        "small_description",
        "pricing",
        "customization_options",
        "product_category",
        "query",
        "category",
        "average_rating",
        "images",
    }
    for rec in products:
        assert keys <= set(rec) and rec["synthetic"] is True
        assert "›" in rec["product_category"]
    assert len({r["category"] for r in products}) >= 4
    assert any(" - $" in r["pricing"] for r in products)  # ranges
    assert any(r["pricing"] == "" for r in products)  # missing price
    assert any(r["customization_options"] == "" for r in products)
    assert all("attributes" in v for v in ins.values())
    assert sum("instruction" in v for v in ins.values()) < len(ins)


def test_loader_drops_bad_and_duplicate_asins_and_parses_fields() -> None:
    cat = load_catalogue(None)
    asins = [p.asin for p in cat.products]
    assert len(asins) == len(set(asins)) == 48
    assert "nan" not in asins and all(len(a) <= 10 for a in asins)
    assert cat.by_asin["B0SYN00003"].title != "Synthetic Duplicate Record"  # first one kept
    scented = [p for p in cat.products if "scent" in p.options and p.query == "scented candle"]
    assert "sea salt | sage" in scented[0].options["scent"]
    shoes = next(p for p in cat.products if p.query == "women running shoes" and p.options)
    assert "black | white" in shoes.options["color"]
    for p in cat.products:
        price = cat.prices[p.asin]
        if len(p.pricing) == 2:
            assert p.pricing[0] <= price <= p.pricing[1] and " to $" in p.price_tag
        else:
            assert price == p.pricing[0]
    assert any(p.price_tag == "$100.0" for p in cat.products)


def test_parse_pricing() -> None:
    assert _parse_pricing("$12.99") == ((12.99,), "$12.99")
    assert _parse_pricing("$1,299.00 - $1,499.50") == ((1299.0, 1499.5), "$1299.0 to $1499.5")
    assert _parse_pricing("") == ((100.0,), "$100.0")
    assert _parse_pricing(None) == ((100.0,), "$100.0")


def test_goal_texts_and_price_bounds() -> None:
    cat = load_catalogue(None)
    assert len(cat.goals) > 60
    for g in cat.goals:
        price = cat.prices[g.asin]
        assert price < g.price_upper and g.price_upper % 10 == 0
        assert g.price_upper - price <= 40
        assert g.instruction_text.endswith(f", and price lower than {g.price_upper:.2f} dollars")
        for name, value in g.goal_options.items():
            assert f"{name}: {value}" in g.instruction_text
    # one goal per option combination of a product
    tshirt = next(p for p in cat.products if p.query == "men t-shirt" and len(p.options) == 2)
    assert sum(g.asin == tshirt.asin for g in cat.goals) == 9


def test_splits_small_catalogue_proportions() -> None:
    task = WebShopTask()
    assert task.splits() == ["test", "eval", "train"]
    n = len(task.catalogue.goals)
    sizes = [task.num_tasks(s) for s in ("test", "eval", "train")]
    assert sum(sizes) == n
    assert sizes[0] == round(0.2 * n) and sizes[1] == round(0.2 * n)
    with pytest.raises(DataNotFoundError, match=r"unknown split 'dev'.*expected one of"):
        task.num_tasks("dev")
    with pytest.raises(ConfigError, match=r"must be an int in \[0, \d+\), got 999"):
        task.reset("test", 999)


def test_seed_changes_prices_and_order_deterministically() -> None:
    a, b, c = (load_catalogue(None, seed=s) for s in (233, 233, 7))
    assert [g.instruction_text for g in a.goals] == [g.instruction_text for g in b.goals]
    assert [g.instruction_text for g in a.goals] != [g.instruction_text for g in c.goals]


# ---------------------------------------------------------------- pages and actions


def test_search_page_and_results_page() -> None:
    task = WebShopTask()
    obs = task.reset("test", 0)
    assert obs.admissible_commands == [SEARCH_TEMPLATE]
    assert obs.text.startswith("WebShop [SEP] Instruction: [SEP] ")
    assert task.description in obs.text and obs.valid and not obs.done
    obs = task.step("search[synthetic]")  # every description says "synthetic"
    assert obs.valid
    assert obs.text.startswith("Back to Search [SEP] Page 1 (Total results: 48) [SEP] Next >")
    asins = [c for c in obs.admissible_commands if c.startswith("click[b0syn")]
    assert len(asins) == 10
    assert obs.admissible_commands[:2] == ["click[back to search]", "click[next >]"]
    obs = task.step("click[next >]")
    assert "Page 2 (Total results: 48) [SEP] < Prev [SEP] Next >" in obs.text
    for _ in range(3):
        obs = task.step("click[next >]")
    assert "Page 5" in obs.text and "click[next >]" not in obs.admissible_commands
    assert len([c for c in obs.admissible_commands if c.startswith("click[b0syn")]) == 8
    obs = task.step("click[< prev]")
    assert "Page 4" in obs.text


def test_item_page_options_subpages_and_back() -> None:
    task = WebShopTask()
    task.reset("test", 0)
    asin = task.goal.asin
    product = task.catalogue.by_asin[asin]
    task.step(task.expert_command())  # search
    obs = task.step(f"click[{asin}]")  # upper case works: arguments are lower-cased
    assert obs.valid and product.title in obs.text
    assert f"Price: {product.price_tag}" in obs.text and obs.text.endswith("Buy Now")
    assert {"click[description]", "click[features]", "click[reviews]", "click[buy now]"} <= set(
        obs.admissible_commands
    )
    name, values = next(iter(product.options.items()))
    task.step(f"click[{values[0]}]")
    task.step(f"click[{values[1]}]")
    assert task._session.options == {name: values[1]}  # one value per option name
    obs = task.step("click[description]")
    assert obs.text == f"Back to Search [SEP] < Prev [SEP] {product.description}"
    assert obs.admissible_commands == ["click[back to search]", "click[< prev]"]
    obs = task.step("click[< prev]")
    assert product.title in obs.text
    obs = task.step("click[features]")
    assert product.bullets[0] in obs.text
    task.step("click[< prev]")
    obs = task.step("click[< prev]")
    assert "Total results" in obs.text
    obs = task.step("click[back to search]")
    assert obs.admissible_commands == [SEARCH_TEMPLATE]


def test_invalid_actions_change_nothing() -> None:
    task = WebShopTask()
    first = task.reset("test", 1)
    for bad in ["click[buy now]", "search[]", "buy it", "click[b0syn00001]", ""]:
        obs = task.step(bad)
        assert not obs.valid and obs.score == 0.0 and not obs.done
        assert obs.text == first.text and obs.admissible_commands == first.admissible_commands
    results = task.step("search[shampoo]")
    obs = task.step("search[lipstick]")  # no search bar on the results page
    assert not obs.valid and obs.text == results.text
    obs = task.step("click[not a button]")
    assert not obs.valid and obs.text == results.text


def test_buy_ends_episode_with_reward() -> None:
    task = WebShopTask()
    task.reset("test", 2)
    wrong = next(p for p in task.catalogue.products if p.query != task.goal.query)
    task.step(f"search[{wrong.title}]")
    task.step(f"click[{wrong.asin.lower()}]")
    obs = task.step("click[buy now]")
    assert obs.done and obs.valid and 0.0 <= obs.score < 1.0 and not obs.won
    assert obs.admissible_commands == []
    assert obs.extra["purchased_asin"] == wrong.asin
    assert obs.extra["reward_breakdown"]["r_type"] < 1.0
    assert task.expert_command() is None
    after = task.step("click[buy now]")
    assert after.done and not after.valid


def test_parse_webshop_command() -> None:
    assert parse_webshop_command("Search[ Red  Shoes ]") == ("search", "red shoes")
    assert parse_webshop_command("click[Buy Now]") == ("click", "buy now")
    assert parse_webshop_command("buy") is None
    assert parse_webshop_command("click[x] and more") is None


# ---------------------------------------------------------------- expert


@pytest.mark.parametrize("human_goals", [False, True])
def test_expert_scores_one_on_every_goal(human_goals: bool) -> None:
    task = WebShopTask(human_goals=human_goals)
    for split in task.splits():
        for index in range(task.num_tasks(split)):
            obs, commands = _play_expert(task, split, index)
            assert obs.done and obs.won and obs.score == 1.0, (split, index, commands)
            assert commands[0].startswith("search[") and commands[-1] == "click[buy now]"


def test_expert_pages_forward_and_backs_out() -> None:
    task = WebShopTask()
    # find a goal whose product is not on page 1 of the "synthetic" results
    all_hits = task.catalogue.search("synthetic")
    index = next(
        i
        for i in range(task.num_tasks("train"))
        if all_hits.index(task.catalogue.goals[task._global_index("train", i)].asin) >= 20
    )
    task.reset("train", index)
    task.step("search[synthetic]")
    assert task.expert_command() == "click[next >]"
    task.step("click[next >]")
    assert task.expert_command() == "click[next >]"
    task.step("click[next >]")
    while task._session.page == "results":
        task.step(task.expert_command())
    assert task._session.asin == task.goal.asin
    # a search that misses the target: the expert goes back and searches the goal's words
    task.reset("train", index)
    other = next(p for p in task.catalogue.products if p.query != task.goal.query)
    task.step(f"search[{other.query}]")
    if task.goal.asin not in task._session.results:
        assert task.expert_command() == "click[back to search]"
    # a wrong item page: back to the results
    task.reset("train", index)
    task.step("search[synthetic]")
    wrong = next(a for a in task._session.results[:10] if a != task.goal.asin)
    task.step(f"click[{wrong}]")
    assert task.expert_command() == "click[< prev]"
    while (command := task.expert_command()) is not None:
        assert task.step(command).valid
    assert task._session.score == 1.0


def test_step_kinds_and_forcing() -> None:
    task = WebShopTask()
    task.reset("test", 0)
    assert task.pending_step_kind() == "search"
    assert task.step_kind("search[anything]") == "search"
    assert task.step_kind("click[buy now]") == "click"
    assert task.step_kind("nonsense") == "click"
    assert task.forced_high("search") and not task.forced_high("click")
    assert not WebShopTask(force_high_on_search=False).forced_high("search")
    task.step(task.expert_command())
    assert task.pending_step_kind() == "click"


def test_task_identity_is_named_synthetic() -> None:
    task = WebShopTask()
    obs = task.reset("eval", 3)
    assert isinstance(task, TextTask) and task.name == "webshop"
    assert task.task_type.startswith("synthetic/")
    assert task.task_id.startswith("webshop-synthetic/goal-")
    assert obs.extra["catalogue"] == "synthetic"
    assert task.description == task.goal.instruction_text


def test_pickle_roundtrip_mid_episode() -> None:
    task = WebShopTask(seed=233)
    task.reset("test", 4)
    task.step(task.expert_command())
    blob = pickle.dumps(task)
    assert len(blob) < 5000  # no catalogue or index inside
    clone = pickle.loads(blob)
    assert clone._catalogue is None  # rebuilt lazily
    assert clone.expert_command() == task.expert_command()
    while (command := clone.expert_command()) is not None:
        obs = clone.step(command)
    assert obs.won


def test_pickle_keeps_the_resolved_catalogue(
    synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = pickle.dumps(WebShopTask())
    monkeypatch.setenv(WEBSHOP_DATA_ENV, str(synth_dir / "elsewhere"))
    clone = pickle.loads(blob)
    assert clone.catalogue.source == "synthetic (built in)"


def test_step_is_fast() -> None:
    task = WebShopTask()
    _play_expert(task, "test", 0)  # warm the index
    n, spent = 0, 0.0
    for index in range(10):
        task.reset("test", index)
        while (command := task.expert_command()) is not None:
            t0 = time.perf_counter()
            task.step(command)
            spent += time.perf_counter() - t0
            n += 1
    assert spent / n < 0.01


# ---------------------------------------------------------------- real-file loader


def test_real_file_loader_on_written_synthetic_files(synth_dir: Path) -> None:
    task = WebShopTask(data_dir=str(synth_dir))
    built_in = WebShopTask()
    assert task.is_synthetic and "synthetic files in" in task.catalogue.source
    assert [g.instruction_text for g in task.catalogue.goals] == [
        g.instruction_text for g in built_in.catalogue.goals
    ]
    obs, _ = _play_expert(task, "eval", 0)
    assert obs.won and obs.extra["catalogue"] == "synthetic"


def test_env_var_fallback(synth_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEBSHOP_DATA_ENV, str(synth_dir))
    task = WebShopTask(human_goals=True, num_products=20)
    assert "synthetic files in" in task.catalogue.source
    assert len(task.catalogue.products) < 20
    obs, _ = _play_expert(task, task.splits()[0], 0)
    assert obs.won


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"items_shuffle_1000.json is missing.*looked for"):
        WebShopTask(data_dir=str(tmp_path))
    (tmp_path / "items_shuffle_1000.json").write_text("[]")
    (tmp_path / "items_ins_v2_1000.json").write_text("{}")
    with pytest.raises(DataNotFoundError, match=r"items_human_ins.json is missing.*WEBSHOP_DATA"):
        WebShopTask(data_dir=str(tmp_path), human_goals=True)
    with pytest.raises(DataNotFoundError, match=r"folder .*nope.* does not exist"):
        WebShopTask(data_dir=str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match=r"synthetic=False needs the real WebShop files"):
        WebShopTask(synthetic=False)
    (tmp_path / "items_shuffle_1000.json").write_text("{not json")
    with pytest.raises(DataNotFoundError, match=r"is not valid JSON"):
        WebShopTask(data_dir=str(tmp_path)).splits()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"exclude each other: expected data_dir=None"):
        WebShopTask(synthetic=True, data_dir="/x")
    with pytest.raises(ConfigError, match=r"num_products must be a positive int or None, got 0"):
        WebShopTask(num_products=0)
    with pytest.raises(ConfigError, match=r"seed must be an int, got '1'"):
        WebShopTask(seed="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"expected reset\(split, index\) first"):
        WebShopTask().step("search[x]")


def test_verify_webshop_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("hello")
    good = hashlib.sha256(b"hello").hexdigest()
    assert verify_webshop_files(tmp_path, {"a.json": (5, good), "b.json": (1, "0" * 64)}) == {
        "a.json": "ok",
        "b.json": "missing",
    }
    with pytest.warns(UserWarning, match=r"has sha256 [0-9a-f]{64}, expected 0{64}"):
        status = verify_webshop_files(tmp_path, {"a.json": (5, "0" * 64)})
    assert status == {"a.json": "mismatch"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared WebShop files not present")
def test_verify_shared_attribute_file_and_mismatch_warning_on_load(tmp_path: Path) -> None:
    status = verify_webshop_files(SHARED)
    assert status["items_ins_v2_1000.json"] == "ok"
    assert status["items_shuffle_1000.json"] == "missing"
    # real (unmarked) product records with the real attribute file: loads, warns on hashes
    products, _, _ = build_synthetic_catalogue()
    for rec in products:
        rec.pop("synthetic")
    (tmp_path / "items_shuffle_1000.json").write_text(json.dumps(products))
    (tmp_path / "items_ins_v2_1000.json").write_bytes(
        (SHARED / "items_ins_v2_1000.json").read_bytes()
    )
    task = WebShopTask(data_dir=str(tmp_path))
    # the real attribute file has no entries for these ASINs: no goal at all, which is a
    # clear error naming the files (not "unknown split ... expected one of []")
    with (
        pytest.warns(UserWarning, match=r"items_shuffle_1000.json has sha256"),
        pytest.raises(CorruptDataError, match=r"give \d+ products and no goal: expected"),
    ):
        task.splits()
