#!/usr/bin/env bash
# Session 22: the benchmark's RL training rate on DMR-ALFWorld-v1 and v0, back to back on the
# otherwise idle machine; session 20's rate check (rate_s20/rate.sh) with the env id changed:
# its defaults except the decisions (2,400) and the evaluation (16 episodes), --jobs 2 as the
# full run uses them, each run with its own cold plan folder. SIMULATED tiers.
# R=/work/runs; the KL-ST router (trained on v0's data) from session 21's rate check.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
for v in v1 v0; do
  start=$(date -u +%H:%M:%S)
  python benchmarks/ppo_vs_grpo.py --env-id "DMR-ALFWorld-$v" --lambdas 0.5 --main-lambda 0.5 \
    --seeds 0 --env-steps 2400 --eval-episodes 16 --klst "$R/s21/rate/klst/router.pt" --jobs 2 \
    --no-results-md --out "$R/s22/rate/$v" > "$R/s22/rate/$v.out" 2> "$R/s22/rate/$v.err"
  echo "$v: $start-$(date -u +%H:%M:%S) UTC"
  grep -h "^GRPO: \|^PPO: " "$R/s22/rate/$v"/rl_*.log
done
