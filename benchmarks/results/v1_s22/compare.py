"""v1 - v0, paired by task, for every router the two benchmark runs share (seed 0, lambda 0.5):
success, HP fraction (per task) and utility, with 95% paired bootstrap CIs over the 134
tasks; then each unit's time and the runs' wall and unit times.
Usage: python compare.py V0_OUT V1_OUT"""

import json
import sys
from pathlib import Path

import numpy as np

from training.evaluation import episode_utility
from training.stats import paired_bootstrap_diff

LAM = 0.5


def runs(out: Path) -> tuple[dict[str, dict[int, dict]], dict[str, float]]:
    records, times = {}, {}
    for unit in sorted(out.glob("*.json")):
        if unit.name == "results.json":
            continue
        data = json.loads(unit.read_text())
        times[unit.stem] = data["wall_s"]
        for name, res in data["results"].items():
            records[name] = {r["task_index"]: r for r in res["records"] if r["seed"] == 0}
    return records, times


(v0, t0), (v1, t1) = runs(Path(sys.argv[1])), runs(Path(sys.argv[2]))
metrics = {
    "success": lambda r: float(r["won"]),
    "HP": lambda r: r["high_decisions"] / r["decisions"] if r["decisions"] else 0.0,
    "utility": lambda r: episode_utility(r, LAM),
}
print(f"router: v0 -> v1 mean, v1 - v0 [95% CI] over tasks (lambda {LAM}/s, seed 0)")
for name in sorted(set(v0) & set(v1)):
    tasks = sorted(set(v0[name]) & set(v1[name]))
    cells = []
    for metric, f in metrics.items():
        a = np.array([f(v0[name][t]) for t in tasks])
        b = np.array([f(v1[name][t]) for t in tasks])
        d = paired_bootstrap_diff(b, a)
        cells.append(
            f"{metric} {a.mean():.3f} -> {b.mean():.3f}, {d.value:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]"
        )
    same = sum(v0[name][t]["tiers"] == v1[name][t]["tiers"] and v0[name][t]["won"] == v1[name][t]["won"] for t in tasks)  # fmt: skip
    print(f"{name} ({len(tasks)} tasks, {same} played alike): " + "; ".join(cells))
print("\nunit: v0 s, v1 s, v1/v0")
for unit in sorted(t0):
    if unit in t1:
        print(f"{unit:22s} {t0[unit]:7.1f} {t1[unit]:7.1f} {t1[unit] / t0[unit]:5.2f}")
for d in sys.argv[1:]:
    r = json.loads((Path(d) / "results.json").read_text())
    print(f"{d}: wall_time_s {r['wall_time_s']:.0f}, unit_time_s {r['unit_time_s']:.0f}")
