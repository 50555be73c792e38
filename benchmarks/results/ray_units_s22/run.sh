#!/usr/bin/env bash
# Session 22: the benchmark's units as Ray tasks (--ray-address local) against --jobs 2 on the
# same 2 cores, back to back on the otherwise idle machine; each run with its own (cold) plan
# folder. SIMULATED tiers. R=/work/runs; KL-ST router from session 21's rate check.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
common=(--seeds 0 --lambdas 0.5 --env-steps 300 --klst "$R/s21/rate/klst/router.pt" --no-results-md)
for how in jobs ray; do
  if [ "$how" = jobs ]; then extra=(--jobs 2); else extra=(--ray-address local); fi
  start=$(date -u +%H:%M:%S)
  /usr/bin/time -f "%e s wall" python benchmarks/ppo_vs_grpo.py "${common[@]}" "${extra[@]}" \
    --out "$R/s22/ray_units/$how" > "$R/s22/ray_units/$how.out" 2> "$R/s22/ray_units/$how.err"
  echo "$how: $start-$(date -u +%H:%M:%S) UTC, $(tail -1 "$R/s22/ray_units/$how.err")"
done
python - "$R/s22/ray_units" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
a, b = (json.loads((root / d / "results.json").read_text()) for d in ("jobs", "ray"))
for d, r in (("jobs", a), ("ray", b)):
    print(f"{d}: wall_time_s {r['wall_time_s']:.0f}, unit_time_s {r['unit_time_s']:.0f}")
for key in ("by_lambda", "curves", "tiers"):
    print(f"{key} identical: {a[key] == b[key]}")
PY
