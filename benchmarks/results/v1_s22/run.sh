#!/usr/bin/env bash
# Session 22: DMR-ALFWorld-v1 (the expert without its PDDL planner) against v0, the same
# reduced benchmark back to back on the otherwise idle machine, --jobs 2, each run with its own
# cold plan folder: one seed, lambda 0.5, RL cut to 300 decisions, every fixed, kind-oracle,
# KL-ST, RL and held-K router on all 134 valid_unseen tasks. SIMULATED tiers.
# R=/work/runs; the KL-ST router (trained on v0's data) from session 21's rate check.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
common=(--seeds 0 --lambdas 0.5 --env-steps 300 --klst "$R/s21/rate/klst/router.pt" --jobs 2 --no-results-md)
for v in v1 v0; do
  start=$(date -u +%H:%M:%S)
  /usr/bin/time -f "%e s wall" python benchmarks/ppo_vs_grpo.py "${common[@]}" \
    --env-id "DMR-ALFWorld-$v" --out "$R/s22/v1/$v" > "$R/s22/v1/$v.out" 2> "$R/s22/v1/$v.err"
  echo "$v: $start-$(date -u +%H:%M:%S) UTC, $(tail -1 "$R/s22/v1/$v.err")"
done
python benchmarks/results/v1_s22/compare.py "$R/s22/v1/v0" "$R/s22/v1/v1"
