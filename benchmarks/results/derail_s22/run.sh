#!/usr/bin/env bash
# Session 22 (SIMULATED tiers): the planner's search time on derailed states. Two routers, one
# process each, run one after the other. R=/work/runs; KL-ST router from session 21's rate check.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
for router in always-low "$R/s21/rate/klst/router.pt"; do
  PYTHONPATH=. python benchmarks/results/derail_s22/derailed_searches.py "$router"
done
