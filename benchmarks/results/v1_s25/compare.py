"""What KL-ST's measured curve changed, and that nothing else did (session 25).

    python benchmarks/results/v1_s25/compare.py OLD NEW [SAME]

OLD is a run folder of the benchmark without the curve (``--curve-points 0``, or made before
session 25), NEW one with it, SAME (optional) another folder with the curve, made otherwise
(from scratch, where NEW resumed OLD's units). Compares their ``results.json``:

* OLD -> NEW: every figure per lambda equal except those read "at the same HP" (the kind
  oracle's, GRPO's and PPO's matched-HP differences), which are printed side by side, and the
  curve itself and the attainable ceiling's gap over its best point, which OLD lacks; the
  learning curves equal;
* NEW -> SAME: everything equal, and the KL-ST routers route alike at every K
  (``agents.router.routes_alike``).

Exits 1 if anything else differs.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from agents.router import routes_alike


def ci(d: dict) -> str:
    return f"{d['value']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def matched(data: dict) -> dict[str, dict]:
    """Every matched-HP difference of one lambda, by a readable name."""
    out = {f"kind oracle {n.removeprefix('kind-oracle')} (HP {m['hp']:.2f})": m
           for n, m in data["headroom"].get("kind_matched_hp", {}).items()}  # fmt: skip
    for k, g in data["grpo_vs_klst"].items():
        out[f"GRPO K={k} (HP {g['grpo_hp']:.2f})"] = g["matched_hp"]
    if ppo := data.get("ppo_pooled"):
        out[f"PPO pooled (HP {ppo['ppo_hp']:.2f})"] = ppo["matched_hp"]
    return out


def without_curve(data: dict) -> dict:
    """One lambda's figures less what reads KL-ST's curve."""
    d = copy.deepcopy(data)
    d.pop("klst_curve", None)
    for key in ("kind_matched_hp", "best_on_curve", "attainable_gap_curve"):
        d["headroom"].pop(key, None)
    for g in d["grpo_vs_klst"].values():
        g.pop("matched_hp")
    if d.get("ppo_pooled"):
        d["ppo_pooled"].pop("matched_hp")
    return d


def main(old: Path, new: Path, same: Path | None) -> int:
    ro, rn = (json.loads((d / "results.json").read_text()) for d in (old, new))
    ok = ro["curves"] == rn["curves"]
    print(f"learning curves equal: {ok}")
    for lam, data in rn["by_lambda"].items():
        rest = without_curve(ro["by_lambda"][lam]) == without_curve(data)
        ok &= rest
        print(f"\nlambda {lam}: every other figure equal: {rest}")
        print("| at the same HP | K points only (OLD) | measured curve (NEW) |\n|---|---|---|")
        mo, mn = matched(ro["by_lambda"][lam]), matched(data)
        for name in mn:
            print(f"| {name} | {ci(mo[name])} | {ci(mn[name])} |")
    if same is not None:
        rs = json.loads((same / "results.json").read_text())
        budgets = rn["args"]["budgets"]
        alike = [routes_alike(new / "klst" / "router.pt", same / "klst" / "router.pt", k)
                 for k in budgets]  # fmt: skip
        equal = rs["by_lambda"] == rn["by_lambda"] and rs["curves"] == rn["curves"]
        print(f"\n{same}: KL-ST routes alike at K {budgets}: {alike}; every figure and curve "
              f"equal to {new}'s: {equal}")  # fmt: skip
        ok &= all(alike) and equal
    for name, r in (("OLD", ro), ("NEW", rn), *((("SAME", rs),) if same else ())):
        print(f"{name}: wall {r['wall_time_s'] / 60:.1f} min for its last invocation, units "
              f"{r['unit_time_s']:.0f} unit-s")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]),
                  Path(sys.argv[3]) if len(sys.argv) > 3 else None))  # fmt: skip
