"""The README's "Plug in your own algorithm" example runs as a user would run it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, requires_alfworld


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_reinforce_example_trains_and_evaluates_through_the_cli(tmp_path):
    router = tmp_path / "router.pt"
    proc = _run(
        "examples/reinforce.py", "--env", "DMR-WebShop-v0", "--episodes", "2",
        "--out", str(router),
    )  # fmt: skip
    assert "episode 1: return" in proc.stdout and router.exists()
    out = tmp_path / "eval.json"
    _run(
        "-m", "training.cli", "evaluate", "--env", "DMR-WebShop-v0", "--split", "test",
        "--router", str(router), "--episodes", "1", "--seeds", "0", "--no-reference",
        "--quiet", "--out", str(out),
    )  # fmt: skip
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 1 and 0.0 <= summary["hp_fraction"] <= 1.0


def test_ppo_vs_grpo_benchmark_smoke(tmp_path, monkeypatch):
    """The benchmark end to end on a tiny WebShop budget (KL-ST built, headroom printed before
    any RL result, both trained from the CLI at two lambdas, every point evaluated with CIs,
    ranks and plots written)."""
    routed_search = '{"task_kwargs": {"force_high_on_search": false}}'  # part 5: GRPO routes search
    proc = _run(
        "benchmarks/ppo_vs_grpo.py", "--quick", "--out", str(tmp_path), "--no-results-md",
        "--env-kwargs", routed_search,
    )  # fmt: skip
    assert f"--env-kwargs '{routed_search}'" in proc.stdout  # every stage gets the env kwargs
    assert proc.stdout.index("### Headroom") < proc.stdout.index("$ precision-gym train-grpo")
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["by_lambda"]) == {"0.02", "0.5"}
    data = results["by_lambda"]["0.02"]
    names = set(data["points"])
    assert {"always-high", "always-low", "oracle", "random", "KL-ST K=0.4", "GRPO K=0.4"} <= names
    online = {"KL-ST K=0.4 online", "GRPO K=0.4 online", "KL-ST K=0.7 online", "GRPO K=0.7 online"}
    assert online <= names  # each K also held online, beside the fixed tau_K point
    kinds = {f"kind-oracle(share>={s})" for s in ("0", "0.1", "0.2")}  # attainable ceiling
    assert kinds <= names
    ranked = names - {"PPO", "oracle", "random"} - online - kinds  # the paper's rank
    assert "PPO" in names and set(data["avg_rank"]) == ranked
    for p in data["points"].values():
        assert p["utility"]["lo"] <= p["utility"]["value"] <= p["utility"]["hi"]
    assert set(data["grpo_vs_klst"]) == {"0.4", "0.7"} and set(data["ppo_vs_start"]) == {"0"}
    pooled = data["ppo_pooled"]  # PPO over every seed: vs its start and vs KL-ST at its HP
    assert set(pooled) == {"vs_start", "matched_hp", "ppo_hp", "start_hp"}
    for d in (pooled["vs_start"], pooled["matched_hp"]):
        assert d["lo"] <= d["value"] <= d["hi"]
    assert "PPO, seeds pooled (HP" in (tmp_path / "results.md").read_text()
    held = data["grpo_vs_klst"]["0.4"]
    assert {"online", "grpo_hp_online", "klst_hp_online"} <= set(held)
    assert held["online"]["lo"] <= held["online"]["value"] <= held["online"]["hi"]
    assert data["headroom"]["ceiling"] == "oracle"
    # KL-ST's measured curve (--curve-points 1 in --quick): its K points and one threshold
    # between them, by HP; every figure at the same HP reads it; it is not a method's point
    curve = data["klst_curve"]  # and its top end: threshold 0, every decision high
    assert [r["name"].split("=")[0] for r in curve][:3] == ["KL-ST K", "KL-ST tau", "KL-ST K"]
    assert {r["name"].split("=")[0] for r in curve[3:]} == {"KL-ST tau"}
    assert [r["hp_pooled"] for r in curve] == sorted(r["hp_pooled"] for r in curve)
    assert curve[-1]["name"] == "KL-ST tau=0" and curve[-1]["hp_pooled"] == 1.0
    # between its highest K (0.7) and its top end, Eq. 7's thresholds at --curve-top
    top = json.loads((tmp_path / "klst_curve_top.json").read_text())
    assert set(top["thresholds"]) == {"0.95", "0.99"} and top["settings"]["curve_top"] == [
        0.95, 0.99]  # fmt: skip
    played = json.loads((tmp_path / "curve_s0.json").read_text())["results"]
    assert {f"KL-ST tau={t:.4g}" for t in top["thresholds"].values()} <= set(played)
    best = max(curve, key=lambda r: r["utility"]["value"])  # the attainable gap over it too
    assert data["headroom"]["best_on_curve"] == best["name"]
    gap = data["headroom"]["attainable_gap_curve"]
    assert gap["lo"] <= gap["value"] <= gap["hi"]
    assert not any(n.startswith("KL-ST tau=") for n in names)
    assert json.loads((tmp_path / "curve_s0.json").read_text())["settings"]["curve_points"] == 1
    assert proc.stdout.index("KL-ST's measured curve") < proc.stdout.index("$ precision-gym")
    assert data["headroom"]["attainable"] in kinds | {"always-high", "always-low"}
    assert set(data["headroom"]["kind_matched_hp"]) == kinds
    assert proc.stdout.index("Attainable ceiling") < proc.stdout.index("$ precision-gym train-grpo")
    assert (tmp_path / "learning_curves.png").exists() and (tmp_path / "frontiers.png").exists()
    report = (tmp_path / "results.md").read_text()
    assert "SIMULATED" in report and "Both held at K online (`--online-step 0.2`)" in report
    # GRPO's per-budget choice: start or refined at each K (none when it kept its start)
    assert "--keep-best-per-budget" in proc.stdout and "GRPO per budget" in report
    for chosen in data["budget_selection"].values():
        assert set(chosen) == {"0.4", "0.7"}
        assert {c["router"] for c in chosen.values()} <= {"start", "refined"}
    # both algorithms confirm a kept later router on fresh episodes; the report lists each run
    assert proc.stdout.count("--confirm-episodes 2") == 4  # 2 lambdas x (GRPO, PPO)
    assert set(data["confirmations"]) == {"GRPO seed 0", "PPO seed 0"}
    for e in data["confirmations"].values():
        assert e["shipped"] in ("start", "refined") and (e["kept"] == 0) == (
            "selection_gain" not in e
        )
    assert "Kept routers (refined - start utility" in report
    _check_reused_rows_replay_alike(monkeypatch, tmp_path, ["--env-kwargs", routed_search])


def _check_reused_rows_replay_alike(monkeypatch, out: Path, flags: list[str]) -> None:
    """Where GRPO shipped its start, its rows are KL-ST's (``reused``, not replayed): a replay
    of the shipped router on the same episodes gives the same records, fixed and online."""
    from training.cli.common import make_env
    from training.grpo import router_for_budget
    from training.policies import load_policy

    pvg = _benchmark_module(monkeypatch)
    args = pvg.parse_args(["--quick", "--out", str(out), "--no-results-md", *flags])
    env = make_env(args.env_id, pvg.env_kwargs(args))
    checked = 0
    for unit, online in (("rl_grpo_l0.5_s0", False), ("online_l0.5_s0", True)):
        data = json.loads((out / f"{unit}.json").read_text())
        for name in data.get("reused", {}):
            k = float(name.split("K=")[1].split()[0])
            router = load_policy(
                router_for_budget(out / "grpo_l0.5_s0", k), env, budget=k,
                online_step=args.online_step if online else None,
            )  # fmt: skip
            replay = pvg.evaluate_all(args, env, {name: router}, 0)[name]
            assert replay["records"] == data["results"][name]["records"], name
            assert data["results"][name]["router"] == name
            checked += 1
    env.close()
    assert checked == 2 * len(args.budgets)  # the quick run ships its start at every K


def test_ppo_vs_grpo_benchmark_units_in_two_processes_give_the_same_results(tmp_path):
    """``--jobs 2`` (how the full benchmark runs its units) reports what one process does:
    the same points, comparisons and curves; only times and paths differ."""
    one = tmp_path / "one"
    _run("benchmarks/ppo_vs_grpo.py", "--quick", "--out", str(one), "--no-results-md")
    two = tmp_path / "two"
    proc = _run(
        "benchmarks/ppo_vs_grpo.py", "--quick", "--jobs", "2", "--out", str(two),
        "--no-results-md",
    )  # fmt: skip
    assert "units (2 at once): 100%" in proc.stderr  # the progress bar over the units
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    for key in ("by_lambda", "curves", "tiers"):
        assert a[key] == b[key], key
    assert (two / "rl_grpo_l0.5_s0.log").read_text().startswith("$ precision-gym train-grpo")
    # the units as Ray tasks on a local Ray instance (started and ended by the run): the same
    ray = tmp_path / "ray"
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'precision-gym[ray]'")
    proc = _run(
        "benchmarks/ppo_vs_grpo.py", "--quick", "--ray-address", "local", "--out", str(ray),
        "--no-results-md",
    )  # fmt: skip
    assert "units (Ray, " in proc.stderr and "100%" in proc.stderr
    c = json.loads((ray / "results.json").read_text())
    for key in ("by_lambda", "curves", "tiers"):
        assert a[key] == c[key], key
    assert (ray / "rl_ppo_l0.02_s0.log").read_text().startswith("$ precision-gym train-sb3")


def _benchmark_module(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pvg", ROOT / "benchmarks/ppo_vs_grpo.py")
    pvg = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "pvg", pvg)  # its dataclasses look their module up
    spec.loader.exec_module(pvg)
    return pvg


def test_ppo_vs_grpo_reports_the_final_rules_one_candidate_whichever_ships(tmp_path, monkeypatch):
    """Under keep_best_rule 'final' the last router is the one candidate: its gain over the
    start on the keep-best episodes is reported even when the start ships (it lost)."""
    from types import SimpleNamespace

    pvg = _benchmark_module(monkeypatch)
    run = tmp_path / "grpo_l0.5_s0"
    run.mkdir()
    start = {"update": 0, "utility": 0.5, "returns": [1.0, 0.0, 1.0, 0.0]}
    last = {"update": 34, "utility": 0.25, "returns": [1.0, 0.0, 0.0, 0.0]}
    summary = {"evaluations": [start, last], "selected_update": 0}
    (run / "summary.json").write_text(json.dumps(summary))
    args = SimpleNamespace(
        algos=["grpo"], seeds=[0], keep_best_rule="final", keep_best_level=0.9,
        rl_eval_episodes=4, confirm_episodes=0, select_split="train_heldout", calib_split="",
    )  # fmt: skip
    found = pvg.confirmations(args, tmp_path, 0.5)
    entry = found["GRPO seed 0"]
    assert entry["kept"] == 0 and entry["shipped"] == "start" and entry["candidate"] == 34
    assert entry["selection_gain"]["value"] == pytest.approx(-0.25)
    text = "\n".join(pvg.confirmation_lines(args, found))
    assert "no confirmation (`--confirm-episodes 0`)" in text
    assert "| GRPO seed 0 | 0 (candidate: 34) | -0.250 [" in text and "| start |" in text
    args.keep_best_rule = "paired"  # many candidates: a run that kept its start names none
    assert "selection_gain" not in pvg.confirmations(args, tmp_path, 0.5)["GRPO seed 0"]


def test_ppo_vs_grpo_reads_klst_at_the_same_hp_off_its_measured_curve(monkeypatch):
    """KL-ST's K points sit far apart in HP; a router between them is compared with KL-ST's
    measured point there (``--curve-points``), not with the straight line joining them
    (session 24: on DMR-ALFWorld-v1 the line made a +0.052 gap of +0.011). Run by run: a run
    that shipped its start adds exactly 0, however the curve bends (session 26: on WebShop
    the pooled HP read a +0.097 same-K gain of one run in three as +0.193 at matched HP)."""
    from types import SimpleNamespace

    from training.evaluation import EpisodeRecord
    from training.stats import curve_at

    pvg = _benchmark_module(monkeypatch)

    def router(high: int, won: list[bool], seed: int = 0) -> list[EpisodeRecord]:
        row = {"seed": seed, "task_type": "x", "episode_time_s": 1.0, "steps": 10,
               "decisions": 10, "high_decisions": high, "episode_return": 0.0}  # fmt: skip
        return [  # 10 decisions per episode
            EpisodeRecord(task_index=i, task_id=f"t{i}", won=w, score=float(w), **row)
            for i, w in enumerate(won)
        ]

    records = {
        "KL-ST K=0.4": router(5, [True, False, False, False]),  # HP 0.5, success 0.25
        "KL-ST K=0.7": router(9, [True, False, False, False]),  # HP 0.9
        "KL-ST tau=0.01": router(7, [True, True, True, True]),  # HP 0.7: the curve bends up
        "GRPO K=0.4@0.5": router(7, [True, True, True, False]),  # HP 0.7, success 0.75
    }
    args = SimpleNamespace(budgets=(0.4, 0.7), n_boot=200, seeds=(0,))
    on_curve = pvg.matched_hp_diff(args, records, "GRPO K=0.4@0.5", 0.0)
    assert on_curve["value"] == pytest.approx(-0.25) and on_curve["interpolated"]
    del records["KL-ST tau=0.01"]  # the K points alone: the line says +0.5
    assert pvg.matched_hp_diff(args, records, "GRPO K=0.4@0.5", 0.0)["value"] == 0.5

    # two runs: run 0 shipped its start (KL-ST K=0.4's routing), run 1 routes like tau=0.01
    won = [True, False, False, False]
    records = {
        "KL-ST K=0.4": router(5, won) + router(5, won, seed=1),  # HP 0.5
        "KL-ST K=0.7": router(9, won) + router(9, won, seed=1),  # HP 0.9
        "KL-ST tau=0.01": router(7, [True] * 4) + router(7, [True] * 4, seed=1),  # HP 0.7
        "KL-ST tau=0.1": router(6, won) + router(6, won, seed=1),  # HP 0.6: a dip
        "GRPO K=0.4@0.5": router(5, won) + router(7, [True] * 4, seed=1),
    }
    args.seeds = (0, 1)
    by_run = pvg.matched_hp_diff(args, records, "GRPO K=0.4@0.5", 0.0)
    assert by_run["value"] == pytest.approx(0.0) and by_run["interpolated"]  # 0 and 0
    # pooled first, the GRPO rows' HP (0.6) would read the dip: +0.375 from two runs that
    # each route exactly as a measured KL-ST point
    pooled = [(pvg.point_hp(records[n]), pvg.per_task_utility(records[n], 0.0))
              for n in pvg.klst_points(args, records)]  # fmt: skip
    grpo = pvg.per_task_utility(records["GRPO K=0.4@0.5"], 0.0)
    assert pvg.point_hp(records["GRPO K=0.4@0.5"]) == pytest.approx(0.6)
    assert (grpo - curve_at(pooled, 0.6)[0]).mean() == pytest.approx(0.375)


def test_ppo_vs_grpo_gives_grpo_cells_a_simultaneous_interval(monkeypatch):
    """GRPO - KL-ST is read at every (K, lambda) cell: 15 comparisons at the defaults, so a
    cell also gets the family's simultaneous 95% interval (Bonferroni), wider than its own."""
    pvg = _benchmark_module(monkeypatch)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.1, 0.3, 40), rng.normal(0.0, 0.3, 40)
    alone = pvg.diff_with_family(a, b, 2_000, 1)
    assert "simultaneous" not in alone
    both = pvg.diff_with_family(a, b, 2_000, 15)
    sim = both["simultaneous"]
    assert sim["family"] == 15 and sim["level"] == pytest.approx(1 - 0.05 / 15)
    assert sim["lo"] < both["lo"] < both["value"] < both["hi"] < sim["hi"]
    assert both["value"] == pytest.approx(float(np.mean(a - b)))


def test_ppo_vs_grpo_a_failed_unit_stops_the_run_and_names_its_log(tmp_path, monkeypatch):
    from types import SimpleNamespace

    pvg = _benchmark_module(monkeypatch)
    args = SimpleNamespace(jobs=2)
    units = ["fixed_s0", "fixed_s1", "fixed_s2"]
    with pytest.raises(SystemExit, match=r"(?s)unit (fixed_s[01]) failed \(exit status 2\); its "
                       r"log .*\1\.log ends:.*unrecognized arguments: --no-such-flag"):  # fmt: skip
        pvg.run_units(args, ["--no-such-flag"], tmp_path, None, tmp_path / "r.pt", units)
    assert not (tmp_path / "fixed_s2.log").exists()  # nothing started after the failure
    assert not list(tmp_path.glob("*.json"))


def test_ppo_vs_grpo_a_failed_ray_unit_stops_the_run_and_names_its_log(
    tmp_path, monkeypatch, local_ray
):
    """--ray-address: a unit's task that fails names the unit, its log and its last lines."""
    from types import SimpleNamespace

    pvg = _benchmark_module(monkeypatch)
    args = SimpleNamespace(jobs=1, ray_address="auto")  # the instance the fixture started
    with pytest.raises(SystemExit, match=r"(?s)unit (fixed_s[01]) failed \(exit status 2\); its "
                       r"log .*\1\.log ends:.*unrecognized arguments: --no-such-flag"):  # fmt: skip
        pvg.run_units(args, ["--no-such-flag"], tmp_path, None, tmp_path / "r.pt", ["fixed_s0", "fixed_s1"])  # fmt: skip
    assert not list(tmp_path.glob("*.json"))
    assert local_ray.is_initialized()  # a caller's instance is left running


def test_ppo_vs_grpo_refuses_a_ray_address_it_cannot_reach_before_any_work(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'precision-gym[ray]'")
    bad = subprocess.run(
        [sys.executable, "benchmarks/ppo_vs_grpo.py", "--quick", "--ray-address", "auto",
         "--out", str(tmp_path / "out"), "--no-results-md"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RAY_ADDRESS": ""},
    )  # fmt: skip
    assert bad.returncode != 0
    assert "--ray-address auto: no Ray instance (ConnectionError" in bad.stderr
    assert "expected 'local', 'auto' with a running instance, or 'ray://host:10001'" in bad.stderr
    assert not (tmp_path / "out").exists()  # nothing built, no folder made


def _units_running(out: Path) -> list[str]:
    """Command lines of the unit processes (``--only-unit``) of the benchmark writing to out."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "--only-unit" in text and str(out) in text:
            found.append(text)
    return found


def _start_benchmark_and_wait_for_units(out: Path, *how: str) -> subprocess.Popen:
    import time

    proc = subprocess.Popen(
        [sys.executable, "benchmarks/ppo_vs_grpo.py", "--quick", *how, "--out", str(out),
         "--no-results-md"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not _units_running(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _units_running(out), "no unit process started"
    return proc


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("how", [("--jobs", "2"), ("--ray-address", "local")], ids=["jobs", "ray"])
def test_ppo_vs_grpo_sigterm_stops_the_units_too(tmp_path, how):
    """A scheduler's SIGTERM (or `kill`) stops the unit processes as well as the runner, with
    the units in local processes and as Ray tasks."""
    import signal

    if how[0] == "--ray-address":
        pytest.importorskip("ray", reason="Ray is not installed: pip install 'precision-gym[ray]'")
    proc = _start_benchmark_and_wait_for_units(tmp_path, *how)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "stopped by signal 15: units that finished are kept (rerun to resume)" in err
    assert _units_running(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_ppo_vs_grpo_units_end_when_the_runner_is_killed(tmp_path):
    """SIGKILL (no handler runs, e.g. the OOM killer) on the runner: its unit processes end
    too (each asked the kernel for a SIGTERM when its parent dies), none plays on."""
    import signal
    import time

    proc = _start_benchmark_and_wait_for_units(tmp_path, "--jobs", "2")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 3  # a quick unit runs for longer: it must not finish on its own
    while _units_running(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _units_running(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_ppo_vs_grpo_a_unit_whose_parent_ended_before_it_started_stops_at_once(tmp_path):
    """A unit orphaned before it could ask to end with its parent (the runner killed while the
    unit was starting): its parent is no longer the pid the runner handed on, so it stops."""
    env = {**os.environ, "PRECISION_GYM_PARENT_PID": str(os.getpid() + 999_999)}
    proc = subprocess.run(
        [sys.executable, "benchmarks/ppo_vs_grpo.py", "--quick", "--out", str(tmp_path / "out"),
         "--only-unit", "fixed_s0", "--no-results-md"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "the process that started this unit has ended" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_ppo_vs_grpo_benchmark_one_algorithm(tmp_path):
    """``--algos grpo``: only GRPO is trained and compared (here with GiGPO's step-level
    advantage, every router on two episode seeds); no PPO point, curve or comparison, and bad
    ``--algos`` is refused."""
    argv = (
        "benchmarks/ppo_vs_grpo.py", "--quick", "--out", str(tmp_path), "--no-results-md",
        "--lambdas", "0.02", "--grpo-step-weight", "1", "--no-per-budget-selection",
        "--eval-seeds-per-run", "2",
    )  # fmt: skip
    proc = _run(*argv, "--algos", "grpo")
    assert "$ precision-gym train-sb3" not in proc.stdout
    unit = json.loads((tmp_path / "rl_grpo_l0.02_s0.json").read_text())
    assert unit["episode_seeds"] == [0, 1]  # seed 0's run on seeds 0 and 0 + (max seed + 1)
    for res in unit["results"].values():
        played = sorted((r["task_index"], r["seed"]) for r in res["records"])
        tasks = sorted({t for t, _ in played})
        assert len(tasks) == 3 and played == [(t, s) for t in tasks for s in (0, 1)]
    assert "--no-keep-best-per-budget" in proc.stdout
    assert "--step-advantage-weight 1.0" in proc.stdout
    data = json.loads((tmp_path / "results.json").read_text())["by_lambda"]["0.02"]
    assert "PPO" not in data["points"] and data["ppo_vs_start"] == {}
    assert data["ppo_pooled"] == {}
    assert data["budget_selection"] == {}  # the selection is off: router.pt at every K
    assert set(data["grpo_vs_klst"]) == {"0.4", "0.7"}
    report = (tmp_path / "results.md").read_text()
    assert "step-level advantage (GiGPO) weight 1" in report and "PPO - its start" not in report
    assert "GRPO ships its refined router at every K" in report
    # PPO added to the finished GRPO run: only its units train, the report has both methods
    more = _run(*argv, "--algos", "grpo,ppo")
    assert "$ precision-gym train-grpo" not in more.stdout
    assert more.stdout.count("$ precision-gym train-sb3") == 1
    both = json.loads((tmp_path / "results.json").read_text())["by_lambda"]["0.02"]
    assert "PPO" in both["points"] and set(both["ppo_vs_start"]) == {"0"}
    assert {n: p for n, p in both["points"].items() if n.startswith("GRPO")} == {
        n: p for n, p in data["points"].items() if n.startswith("GRPO")
    }
    assert both["points"]["PPO"]["episodes"] == 6  # 3 tasks x 2 episode seeds
    # finished units played two episode seeds: a rerun asking for one is refused, not mixed
    bad = subprocess.run(
        [sys.executable, *argv[:-1], "1", "--algos", "grpo,ppo"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "was evaluated on episode seeds [0, 1]; this run expects [0]" in bad.stderr
    # ... and so is a rerun that changes an option a finished unit's rows depend on
    for flag, value, said in (
        ("--grpo-lr", "0.001", "rl_grpo_l0.02_s0.json was made with grpo_lr = 0.0001; this "
         "run asks for 0.001 (--grpo-lr)"),
        ("--env-steps", "32", "rl_grpo_l0.02_s0.json was made with env_steps = 24; this run "
         "asks for 32 (--env-steps at lambda 0.02)"),
        ("--kind-shares", "0,0.3", "kind_s0.json was made with kind_shares = [0.0, 0.1, 0.2]; "
         "this run asks for [0.0, 0.3] (--kind-shares)"),
        ("--env-kwargs", '{"task_kwargs": {"force_high_on_search": false}}',
         "fixed_s0.json was made with env_kwargs = {}; this run asks for {'task_kwargs': "
         "{'force_high_on_search': False}} (--env-kwargs)"),
        ("--online-step", "0.3", "online_s0.json was made with online_step = 0.2; this run "
         "asks for 0.3 (--online-step)"),
    ):  # fmt: skip
        bad = subprocess.run(
            [sys.executable, *argv, "--algos", "grpo,ppo", flag, value],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert bad.returncode != 0 and said in bad.stderr, (flag, bad.stderr[-500:])
        assert "use another --out, or remove the unit file" in bad.stderr
    # ... and one that names another KL-ST router (here: recalibrated at K = 0.4)
    from agents.router import TransformerRouterPolicy

    other = TransformerRouterPolicy.load(tmp_path / "klst" / "router.pt")
    other.thresholds["0.4"] += 0.01
    bad = subprocess.run(
        [sys.executable, *argv, "--algos", "grpo,ppo", "--klst",
         str(other.save(tmp_path / "other.pt"))],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0
    assert f"fixed_s0.json was made with another KL-ST router than {tmp_path}/other.pt" in (
        bad.stderr
    )
    # ... and a curve measured at other thresholds (here: without its top end, threshold 0,
    # as before session 26), though its option values are the same
    curve_file = tmp_path / "curve_s0.json"
    kept = curve_file.read_text()
    unit = json.loads(kept)
    assert unit["results"].pop("KL-ST tau=0")["threshold"] == 0.0
    curve_file.write_text(json.dumps(unit))
    bad = subprocess.run(
        [sys.executable, *argv, "--algos", "grpo,ppo"], capture_output=True, text=True, cwd=ROOT
    )  # fmt: skip
    curve_file.write_text(kept)
    assert bad.returncode != 0
    assert "curve_s0.json measured KL-ST's curve at thresholds [" in bad.stderr
    assert "; this run's curve is [0.0, " in bad.stderr
    assert "(--curve-points 1, --curve-top [0.95, 0.99])" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "benchmarks/ppo_vs_grpo.py", "--algos", "dqn", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0 and "--algos must name grpo, ppo or both, got 'dqn'" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "benchmarks/ppo_vs_grpo.py", "--curve-top", "0.5,0.95", "--out",
         str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0 and (
        "--curve-top budgets must lie strictly between the highest --budgets K (0.9) and 1, "
        "got [0.5]" in bad.stderr
    )
    # RL trains on --train-split and selects on --select-split; a split the task lacks is
    # refused before any work starts
    assert "--split train --eval-split eval" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "benchmarks/ppo_vs_grpo.py", "--quick", "--select-split", "heldout",
         "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0
    assert (
        "--select-split must be one of ['test', 'eval', 'train'] for DMR-WebShop-v0, got 'heldout'"
        in bad.stderr
    )
    assert not (tmp_path / "bad").exists()


def test_soak_benchmark_smoke():
    """benchmarks/soak.py on a tiny budget: RSS rows, the growth figure and a verdict line."""
    proc = _run(
        "benchmarks/soak.py", "--decisions", "60", "--every", "20", "--warmup", "20",
        "--limit", "50",
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert sum(line.startswith("decisions ") and "RSS" in line for line in lines) == 3
    assert lines[-2].startswith("rss_growth=") and lines[-1].startswith(("PASS", "FAIL"))


def _summary(path, returns, *, simulated=True, seeds=(0,)):
    """An ``evaluate --out``-shaped summary whose episodes are won in ``returns[i]`` of the time."""
    records = [
        {"seed": s, "task_index": t, "won": bool(w), "episode_time_s": time_s, "decisions": 4,
         "high_decisions": high}
        for s in seeds
        for t, (w, time_s, high) in enumerate(returns)
    ]  # fmt: skip
    path.write_text(json.dumps({"simulated": simulated, "records": records}))
    return str(path)


def test_derailed_headroom_smoke(tmp_path):
    """The derailed-state diagnostic runs end to end and writes its figures and records."""
    out = tmp_path / "d.json"
    proc = _run("benchmarks/derailed_headroom.py", "--quick", "--out", str(out))
    assert "SIMULATED precision tiers" in proc.stdout and "| K | success" in proc.stdout
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["gain"]["lo"] <= row["gain"]["value"] <= row["gain"]["hi"]
    assert len(row["records"]["router"]) == len(row["records"]["wrapper"]) == 3
    assert 0 <= row["differ"] <= 3
    bad = subprocess.run(
        [sys.executable, "benchmarks/derailed_headroom.py", "--quick", "--split", "nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0 and "--split must be one of" in bad.stderr


def test_matched_hp_smoke(tmp_path):
    """benchmarks/matched_hp.py end to end on WebShop: KL-ST's curve, the candidate against it
    with a CI, the PNG; a rerun reuses the stored units and prints the same figures; a
    malformed --router and a bad --split are refused before any episode."""
    out = tmp_path / "m"
    proc = _run("benchmarks/matched_hp.py", "--quick", "--out", str(out))
    assert "SIMULATED precision tiers" in proc.stdout and "| threshold | HP |" in proc.stdout
    data = json.loads((out / "results.json").read_text())
    assert [r["threshold"] for r in data["klst_curve"]] == [0.3, 0.5, 0.7]
    head, row = data["candidates"]  # the headroom (kind oracle) first
    assert head["candidate"] == "kind-oracle s0" and head["group"] == "kind-oracle"
    assert row["candidate"] == "untrained s0" and 0.0 <= row["hp_fraction"] <= 1.0
    assert row["diff"]["lo"] <= row["diff"]["value"] <= row["diff"]["hi"]
    assert data["pooled"]["untrained"]["seeds"] == data["pooled"]["kind-oracle"]["seeds"] == 1
    both = data["pooled"]["untrained"]["diff_simultaneous"]  # one router group: the same level
    assert both["family"] == 1 and "diff_simultaneous" not in data["pooled"]["kind-oracle"]
    assert (out / "matched_hp.png").stat().st_size > 0
    assert len(list((out / "units").glob("*.json"))) == 5  # 3 curve points + 2 candidates
    again = _run("benchmarks/matched_hp.py", "--quick", "--out", str(out))
    table = proc.stdout.split("wall time")[0]
    assert again.stdout.split("wall time")[0] == table
    unit = out / "units" / "kind-oracle_s0_s0.json"  # as stored before the oracle paid router time
    assert json.loads(unit.read_text())["spec"]["baseline"] == "kind-oracle(share>=0)"
    old = json.loads(unit.read_text())
    del old["spec"]["baseline"]
    unit.write_text(json.dumps(old))
    stale = subprocess.run(
        [sys.executable, "benchmarks/matched_hp.py", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert stale.returncode != 0 and "was played with another baseline" in stale.stderr
    other = tmp_path / "other.pt"  # a stored unit is not reused once its router file changes
    other.write_bytes((out / "quick_router.pt").read_bytes())
    cand = ["--router", f"other={other}@0", "--out", str(tmp_path / "o")]
    _run("benchmarks/matched_hp.py", "--quick", *cand)
    from agents.router import TransformerRouterPolicy

    changed = TransformerRouterPolicy.load(other)
    changed.thresholds["0.5"] = 0.5
    changed.save(other)
    stale = subprocess.run(
        [sys.executable, "benchmarks/matched_hp.py", "--quick", *cand],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert stale.returncode != 0 and "was played with another digest" in stale.stderr
    for flags, message in (
        (["--router", "PPO=model.zip"], "--router expects GROUP=PATH"),
        (["--grpo-run", "=runs/grpo"], "--grpo-run expects [GROUP=]DIR"),
        (["--run-thresholds", "0.5,2"], "--run-thresholds must be in (0, 1)"),
        (["--split", "nope"], "--split must be one of"),
        (["--env-kwargs", "[1]"], "--env-kwargs expects a JSON object"),
        (["--env-kwargs", '{"nope": 1}'], "unknown env kwargs ['nope']"),
        (["--kind-shares", "0,2"], "--kind-shares must be in [0, 1]"),
    ):
        bad = subprocess.run(
            [sys.executable, "benchmarks/matched_hp.py", "--quick", "--out", str(tmp_path / "b"),
             *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert bad.returncode != 0 and message in bad.stderr
        assert not list((tmp_path / "b" / "units").glob("*.json"))


def test_matched_hp_kind_oracle_at_lower_hp_with_search_steps_routed(tmp_path):
    """--kind-shares adds headroom rows at lower HP; --env-kwargs reaches every worker's env
    (WebShop's search steps routed: share 0.1 sends them low), and a unit stored with other
    env kwargs is refused."""
    out = tmp_path / "k"
    routed = ["--env-kwargs", '{"task_kwargs": {"force_high_on_search": false}}']
    _run("benchmarks/matched_hp.py", "--quick", "--kind-shares", "0,0.1", *routed, "--out",
         str(out))  # fmt: skip
    rows = {r["candidate"]: r for r in json.loads((out / "results.json").read_text())["candidates"]}
    assert list(rows)[:2] == ["kind-oracle s0", "kind-oracle(share>=0.1) s0"]  # headroom first
    assert rows["kind-oracle s0"]["hp_fraction"] == 1.0  # every live step high
    assert rows["kind-oracle(share>=0.1) s0"]["hp_fraction"] < 1.0  # searches low
    again = _run("benchmarks/matched_hp.py", "--quick", "--kind-shares", "0,0.1", *routed,
                 "--router", f"copy={out / 'quick_router.pt'}@0",
                 "--router", f"twin={out / 'quick_router.pt'}@0", "--out", str(out))  # fmt: skip
    pooled = json.loads((out / "results.json").read_text())["pooled"]
    one, wide = pooled["copy"]["diff"], pooled["copy"]["diff_simultaneous"]
    assert wide["family"] == 2 and wide["lo"] <= one["lo"] <= one["hi"] <= wide["hi"]
    assert "simultaneous [" in again.stdout and "over the 2 router group(s)" in again.stdout
    unit = json.loads((out / "units" / "kind-oracle_share__0.1__s0_s0.json").read_text())
    assert unit["spec"]["unit"]["min_share"] == 0.1
    assert unit["spec"]["env_kwargs"] == {"task_kwargs": {"force_high_on_search": False}}
    stale = subprocess.run(
        [sys.executable, "benchmarks/matched_hp.py", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert stale.returncode != 0 and "was played with another env_kwargs" in stale.stderr


def test_matched_hp_puts_klst_calibrated_points_on_its_curve(tmp_path):
    """KL-ST's calibrated thresholds tau_K join the curve's grid, so a router that ships
    KL-ST's own K point is compared with a measured point (difference exactly 0), not with a
    straight line between two grid points; --no-calibrated-points leaves them out."""
    _run("benchmarks/matched_hp.py", "--quick", "--no-headroom", "--out", str(tmp_path / "q"))
    from agents.router import TransformerRouterPolicy

    klst = tmp_path / "klst.pt"
    policy = TransformerRouterPolicy.load(tmp_path / "q" / "quick_router.pt")
    policy.thresholds = {"0.5": 0.6}
    policy.save(klst)
    flags = ["--klst", str(klst), "--router", f"start={klst}#0.5@0", "--no-headroom"]
    proc = _run("benchmarks/matched_hp.py", "--quick", *flags, "--out", str(tmp_path / "c"))
    data = json.loads((tmp_path / "c" / "results.json").read_text())
    assert [r["threshold"] for r in data["klst_curve"]] == [0.3, 0.5, 0.6, 0.7]
    assert "| 0.6 (tau of K = 0.5) |" in proc.stdout
    (row,) = data["candidates"]
    assert row["diff"] == {"value": 0.0, "lo": 0.0, "hi": 0.0, "level": row["diff"]["level"]}
    _run("benchmarks/matched_hp.py", "--quick", *flags, "--no-calibrated-points", "--out",
         str(tmp_path / "g"))  # fmt: skip
    data = json.loads((tmp_path / "g" / "results.json").read_text())
    assert [r["threshold"] for r in data["klst_curve"]] == [0.3, 0.5, 0.7]
    # --thresholds-between 1: the logit midpoint of each gap between calibrated thresholds
    policy.thresholds = {"0.5": 0.6, "0.2": 0.9}
    policy.save(klst)
    _run("benchmarks/matched_hp.py", "--quick", *flags, "--thresholds-between", "1",
         "--out", str(tmp_path / "m"))  # fmt: skip
    data = json.loads((tmp_path / "m" / "results.json").read_text())
    odds = math.sqrt(1.5 * 9)  # the mean of logit(0.6) = log 1.5 and logit(0.9) = log 9
    grid = [0.3, 0.5, 0.6, 0.7, odds / (1 + odds), 0.9]
    assert [r["threshold"] for r in data["klst_curve"]] == pytest.approx(grid)


def test_matched_hp_plays_a_named_grpo_run_along_its_own_curve(tmp_path):
    """``--grpo-run GROUP=DIR --run-thresholds``: a (tiny) GRPO run's last router at its last
    operating point and at each threshold, one group per threshold, each against the curve."""
    from training.grpo import GRPOConfig, train_grpo

    run = tmp_path / "grpo"
    train_grpo(GRPOConfig(env_id="DMR-WebShop-v0", split="train", pool_size=2, tasks_per_batch=1,
                          group_size=2, max_updates=1, d_model=16, n_layers=1, n_heads=2,
                          calibration_episodes=0, eval_every=0, tensorboard=False,
                          progress=False, out=str(run)))  # fmt: skip
    out = tmp_path / "m"
    _run("benchmarks/matched_hp.py", "--quick", "--no-headroom", "--grpo-run", f"tiny={run}",
         "--run-thresholds", "0.4", "--out", str(out))  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    names = [r["candidate"] for r in data["candidates"]]
    assert names == ["tiny s0", "tiny tau=0.4 s0", "untrained s0"]
    assert set(data["pooled"]) == {"tiny", "tiny tau=0.4", "untrained"}
    spec = json.loads((out / "units" / "tiny_tau_0.4_s0_s0.json").read_text())["spec"]
    assert spec["unit"]["threshold"] == 0.4 and spec["digest"]


def test_routing_by_state_smoke(tmp_path):
    """benchmarks/routing_by_state.py end to end on WebShop: KL-ST plays, every scorer scores
    the same states, AUCs with a CI against KL-ST, the PNG; a rerun reuses the stored states
    and prints the same table; a malformed --router is refused before any episode."""
    out = tmp_path / "r"
    proc = _run("benchmarks/routing_by_state.py", "--quick", "--out", str(out))
    assert "SIMULATED precision tiers" in proc.stdout and "| scorer | threshold |" in proc.stdout
    data = json.loads((out / "results.json").read_text())
    klst, same = data["scorers"]
    assert (klst["scorer"], same["scorer"]) == ("KL-ST", "untrained")
    assert 0 < data["live"] < data["states"]  # both labels occur
    assert klst["threshold"] == 0.99 and klst["auc_minus_klst"] is None
    assert 0.0 <= same["auc"] <= 1.0 and same["auc"] == klst["auc"]  # the same file scores
    assert same["auc_minus_klst"]["value"] == 0.0
    assert (out / "routing_by_state.png").stat().st_size > 0
    again = _run("benchmarks/routing_by_state.py", "--quick", "--out", str(out))
    assert again.stdout.split("wall time")[0] == proc.stdout.split("wall time")[0]
    bad = subprocess.run(
        [sys.executable, "benchmarks/routing_by_state.py", "--quick", "--out",
         str(tmp_path / "b"), "--router", "x"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0 and "--router expects NAME=PATH[#K]" in bad.stderr
    assert not list((tmp_path / "b").glob("states_*.json"))


def test_paired_compare_smoke(tmp_path):
    """benchmarks/paired_compare.py: per-seed and pooled rows with the paired difference, a
    benchmark unit's router by PATH#NAME, and clear errors for episodes that do not pair up."""
    a = _summary(tmp_path / "a.json", [(1, 2.0, 4), (1, 2.0, 4), (0, 4.0, 2)], seeds=(0, 1))
    b = _summary(tmp_path / "b.json", [(1, 2.0, 0), (0, 4.0, 0), (0, 4.0, 0)], seeds=(0, 1))
    unit = tmp_path / "unit.json"
    unit.write_text(json.dumps({"results": {"KL-ST K=0.4": json.loads(Path(b).read_text())}}))
    proc = _run(
        "benchmarks/paired_compare.py", "--a", a, "--b", f"{unit}#KL-ST K=0.4",
        "--cost-weight", "0.5",
    )  # fmt: skip
    assert "SIMULATED" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| seed", "| pooled"))]
    assert len(rows) == 3
    # utilities: A (0, 0, -2) -> -0.667, B (0, -2, -2) -> -1.333; A - B = +0.667 on every seed
    assert rows[-1].startswith(
        "| pooled | 3 | 0.667 / 0.333 | 0.83 / 0.00 | -0.667 / -1.333 | +0.667"
    )
    bad = subprocess.run(
        [sys.executable, "benchmarks/paired_compare.py", "--a", a, "--b",
         _summary(tmp_path / "c.json", [(1, 2.0, 0)]), "--cost-weight", "0.5"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "the sides must hold the same (seed, task) episodes: 5 only in A" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "benchmarks/paired_compare.py", "--a", a, "--b", f"{unit}#PPO",
         "--cost-weight", "0.5"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert "has no router 'PPO': expected one of ['KL-ST K=0.4']" in bad.stderr


_HELP_AUDIT = r"""
import argparse, runpy, sys

class Parsed(Exception):
    "raised once a parser is audited: nothing runs past argument parsing"

missing = {}

def audit(parser, *args, **kwargs):
    def walk(p, prefix):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{prefix} {name}")
            elif a.option_strings and a.help is None:
                missing.setdefault(prefix, []).append(a.option_strings[-1])
    walk(parser, parser.prog)
    raise Parsed

argparse.ArgumentParser.parse_args = audit
argparse.ArgumentParser.parse_known_args = audit
for target in sys.argv[1:]:
    sys.argv = [target]
    try:
        if target.endswith(".py"):
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except Parsed:
        continue
    raise SystemExit(f"{target} parsed no arguments")
print(missing)
"""


def test_every_option_of_every_script_has_help():
    """``--help`` describes every option of the CLI, the benchmarks and the examples (each
    parser is audited as the script builds it; nothing runs past argument parsing)."""
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("*.py"))
    scripts += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.py"))
    proc = _run("-c", _HELP_AUDIT, "training.cli", *scripts)
    assert proc.stdout.strip().splitlines()[-1] == "{}", proc.stdout[-2000:]


def test_kind_probe_labels_follow_the_simulator():
    """``kind_labels`` is the kind oracle's rule on the simulator's own critical shares: on
    the ALFWorld pair (w4-sim low) navigation falls below 0.1 for every task type, every other
    kind is above it; on WebShop's, search falls below and click is above."""
    import importlib.util

    from precision_gym.backends.simulated import SimulatedPrecisionPair

    spec = importlib.util.spec_from_file_location("kind_probe", ROOT / "benchmarks/kind_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    alf = SimulatedPrecisionPair("alfworld")
    types = ["pick_and_place_simple", "pick_two_obj_and_place", "look_at_obj_in_light"]
    for t in types:
        labels = probe.kind_labels(["navigation", "manipulation", "other"], [t] * 3, alf, 0.1)
        assert labels.tolist() == [1, 0, 0]  # class 0 = high tier
    assert probe.kind_labels(["manipulation"], [types[0]], alf, 0.9).tolist() == [1]
    web = SimulatedPrecisionPair("webshop")
    assert probe.kind_labels(["search", "click"], ["buy", "buy"], web, 0.1).tolist() == [1, 0]


def test_kind_probe_benchmark_smoke(tmp_path):
    """``kind_probe.py --quick``: a router trained on the simulator's step-kind labels, named
    a diagnostic in its metadata and output, calibrated like any router; a trained probe is
    not overwritten by a rerun without ``--overwrite``."""
    proc = _run("benchmarks/kind_probe.py", "--quick", "--out", str(tmp_path))
    assert "SIMULATED step-kind labels: a diagnostic" in proc.stdout
    summary = json.loads((tmp_path / "probe.json").read_text())
    assert summary["n_train_states"] > 0 and 0.0 <= summary["val_balanced_accuracy"] <= 1.0
    assert set(summary["thresholds"]) == {"0.5"}
    from agents.router import TransformerRouterPolicy

    meta = TransformerRouterPolicy.load(tmp_path / "router.pt").metadata
    assert meta["trained_with"] == "kind-probe" and "tau_kl" not in meta
    assert meta["kind_probe"]["what"].startswith("SIMULATED step-kind labels")
    assert not (tmp_path / "kl_hist.png").exists()  # the KL histogram is not the probe's
    again = subprocess.run(
        [sys.executable, "benchmarks/kind_probe.py", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert again.returncode != 0 and "--overwrite" in again.stderr
    bad = subprocess.run(
        [sys.executable, "benchmarks/kind_probe.py", "--out", str(tmp_path / "x"),
         "--kl", str(tmp_path / "kl")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0 and "a collection of another task?" in bad.stderr
    assert not (tmp_path / "x").exists()  # refused before anything is written


@requires_alfworld
def test_bench_engine_smoke(tmp_path):
    """benchmarks/bench_engine.py on tiny sizes: both modes play the same episodes, and it
    prints its ratios (the calibration part too, given a router)."""
    proc = _run("benchmarks/bench_engine.py", "--quick")
    lines = dict(
        line.split("=", 1) for line in proc.stdout.splitlines()[-4:] if "=" in line
    )  # fmt: skip
    assert lines["same_episodes"] == "True"
    for name in ("speedup_engine", "speedup_rollout_without_searches", "speedup_rollout"):
        assert float(lines[name]) > 0
    # (3) with a router: an untrained one, calibrated with and without shared planner answers
    import gymnasium as gym

    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    env = gym.make("DMR-ALFWorld-v0").unwrapped
    config = RouterConfig(embed_dim=env.embedding_dim, max_len=env.max_history, n_layers=1)
    meta = {"task": env.task.name, "tier_names": list(env.tier_names)}
    router = TransformerRouterPolicy(TransformerRouter(config), metadata=meta)
    path = router.save(tmp_path / "router.pt")
    proc = _run("benchmarks/bench_engine.py", "--quick", "--init-checkpoint", str(path),
                "--calib-episodes", "2")  # fmt: skip
    assert "(3) calibration (SIMULATED pair): 2 valid_train episodes" in proc.stdout
    assert (
        "same_episodes=True" in proc.stdout and "speedup_calibration_shared_plans=" in proc.stdout
    )
    bad = subprocess.run(
        [sys.executable, "benchmarks/bench_engine.py", "--group-size", "0"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "--group-size must be >= 1, got 0" in bad.stderr
