"""Two runs of the benchmark with the same arguments give the same results (session 24).

    python benchmarks/results/v1_s24/same_as_s23.py RUN_A RUN_B

Compares the two folders' ``results.json``: every figure per lambda and the learning curves,
and the KL-ST router each built from scratch (``agents.router.routes_alike`` at every K);
prints each run's wall time, unit time and the GRPO rows it took over from KL-ST.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agents.router import routes_alike


def main(a: Path, b: Path) -> int:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    budgets = ra["args"]["budgets"]
    klst = [routes_alike(a / "klst" / "router.pt", b / "klst" / "router.pt", k) for k in budgets]
    print(f"KL-ST routers built from scratch route alike at K {budgets}: {klst}")
    for lam in ra["by_lambda"]:
        diff = [
            k
            for k in ra["by_lambda"][lam]
            if ra["by_lambda"][lam][k] != rb["by_lambda"].get(lam, {}).get(k)
        ]
        print(
            f"lambda {lam}: every figure equal: {not diff}" + (f" (differ: {diff})" if diff else "")
        )
    print(f"learning curves equal: {ra['curves'] == rb['curves']}")
    for name, r in (("A", ra), ("B", rb)):
        print(
            f"run {name}: wall {r['wall_time_s'] / 60:.1f} min, units {r['unit_time_s']:.0f} "
            f"unit-s, GRPO rows taken over from KL-ST: {r.get('reused_rows', 'n/a (older run)')}"
        )
    same = all(klst) and ra["by_lambda"] == rb["by_lambda"] and ra["curves"] == rb["curves"]
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
