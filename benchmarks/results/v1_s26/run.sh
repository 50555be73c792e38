#!/usr/bin/env bash
# Session 26, DMR-ALFWorld-v1, on this session's fresh 2-core machine, SIMULATED tiers
# (bf16-sim, w4-sim). R=/work/runs.
# The whole benchmark at its defaults was started from scratch with d96f74d (KL-ST at the same
# HP read run by run). It did not finish in the session: it was paused for the CI run and
# stopped after its first stage and 4 of its 18 RL units. stage1.py compares what the first
# stage measured with session 25's report (stage1.txt).
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
mkdir -p "$R/s26"
git -c advice.detachedHead=false worktree add --detach "$R/s26/wt_d96f74d" d96f74d
(cd "$R/s26/wt_d96f74d" && python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 \
  --out "$R/s26/v1" --results-md "$R/s26/v1_section.md" > "$R/s26/v1.log" 2>&1)
git worktree remove --force "$R/s26/wt_d96f74d"
python benchmarks/results/v1_s26/stage1.py "$R/s26/v1" | tee benchmarks/results/v1_s26/stage1.txt
