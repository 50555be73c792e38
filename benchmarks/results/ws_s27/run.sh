#!/usr/bin/env bash
# Session 27, DMR-WebShop-v0 with search steps routed, SIMULATED tiers (bf16-sim, w4-sim), on
# the 2-core machine. R=/work/runs. Code: 1b9a546 (KL-ST's curve also plays at --curve-top
# budgets 0.95 and 0.99, and --curve-points thresholds in each gap, between its K = 0.9 point
# and its top end). Session 26's WebShop run folder (benchmarks/results/ws_s26/run.sh, step 2:
# $R/s26/webshop_top) with its three curve units redone: only they play, then the analysis.
# The folder and report were lost with that session's machine (the session was cut off before
# they were copied here); the figures in RESULTS.md "Session 28" were read from its report.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
mkdir -p "$R/s27"
WS=(--env-id DMR-WebShop-v0 --env-kwargs '{"task_kwargs": {"force_high_on_search": false}}'
    --eval-split test --eval-episodes 0 --eval-seeds-per-run 4 --calib-split eval
    --calib-episodes 19 --kl-episodes 120 --jobs 1)
FULL=(--lambdas 0.02,0.1,0.5 --main-lambda 0.1 --env-steps 6000 --other-env-steps 3000)
cp -r "$R/s26/webshop_top" "$R/s27/ws_fill"
rm "$R/s27/ws_fill"/curve_s*.json  # measured without the curve top: refused, so redone
python benchmarks/ppo_vs_grpo.py "${WS[@]}" "${FULL[@]}" \
  --out "$R/s27/ws_fill" --results-md "$R/s27/ws_fill_section.md" > "$R/s27/ws_fill.log" 2>&1
