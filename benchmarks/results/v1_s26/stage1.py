"""The first stage of the v1 benchmark on this session's fresh machine, against session 25.

    python benchmarks/results/v1_s26/stage1.py RUN_DIR

RUN_DIR is the benchmark's folder (``--out``) once its first stage has run: the fixed routers'
units ``fixed_s0..2.json`` (134 valid_unseen tasks, 3 seeds). Prints, per router, success
and HP pooled over the 402 episodes' decisions, and utility at lambda 0.02 (each task's mean
over its seeds, then the mean over tasks, as the benchmark's report does), beside session 25's
report (`benchmarks/results/v1_s25/full_section.md`, lambda 0.02 table). SIMULATED tiers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

LAM = 0.02
S25 = Path(__file__).parents[1] / "v1_s25" / "full_section.md"


def session25() -> dict[str, tuple[str, str]]:
    """Success and utility of each router in session 25's lambda-0.02 table."""
    out, table = {}, False
    for line in S25.read_text().splitlines():
        table = table or line.startswith("### lambda = 0.02/s")
        if table and line.startswith("### lambda = 0.1/s"):
            break
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if table and len(cells) >= 5 and cells[1][:1].isdigit():
            out[cells[0]] = (cells[1].split()[0], cells[4].split()[0])
    return out


def main(run: Path) -> int:
    recs: dict[str, list[dict]] = {}
    for seed in (0, 1, 2):
        unit = json.loads((run / f"fixed_s{seed}.json").read_text())
        for name, result in unit["results"].items():
            recs.setdefault(name, []).extend(result["records"])
    old = session25()
    print("SIMULATED tiers (bf16-sim, w4-sim). lambda = 0.02/s; 134 tasks x 3 seeds.\n")
    print("| router | success % | HP, pooled | utility | session 25: success %, utility |")
    print("|---|---:|---:|---:|---|")
    for name, rs in recs.items():
        by_task: dict[int, list[float]] = {}
        for r in rs:
            by_task.setdefault(r["task_index"], []).append(
                float(r["won"]) - LAM * r["episode_time_s"]
            )
        utility = np.mean([np.mean(v) for v in by_task.values()])
        hp = sum(r["high_decisions"] for r in rs) / sum(r["decisions"] for r in rs)
        was = ", ".join(old.get(name, ("-", "-")))
        print(f"| {name} | {100 * np.mean([r['won'] for r in rs]):.1f} | {hp:.2f} | "
              f"{utility:.3f} | {was} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
