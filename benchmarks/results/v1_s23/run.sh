#!/usr/bin/env bash
# Session 23: the whole benchmark at its defaults on DMR-ALFWorld-v1 (the expert without its
# PDDL planner), one invocation on the otherwise idle 2-core machine, --jobs 2 (default):
# KL-ST built from scratch on v1, 3 lambdas, 12,000 decisions per algorithm and seed at
# lambda 0.02 (4,000 at 0.1 and 0.5), 3 seeds, every router on all 134 valid_unseen tasks x
# 3 seeds. Then GRPO alone at lambda 0.5 with 12,000 decisions (the lambda with headroom),
# reusing the first run's KL-ST router and its lambda-free units (fixed routers, kind oracle,
# KL-ST held at K), and the candidates the keep-best rule turned down, on the test tasks.
# SIMULATED tiers (bf16-sim, w4-sim). R=/work/runs.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 \
  --out "$R/s23/v1_full" --results-md "$R/s23/v1_full_section.md" > "$R/s23/v1_full.log" 2>&1
mkdir -p "$R/s23/v1_l05"
cp -r "$R/s23/v1_full"/{fixed_s0,fixed_s1,fixed_s2,kind_s0,kind_s1,kind_s2,online_s0,online_s1,online_s2}.json \
  "$R/s23/v1_full/klst_calibration" "$R/s23/v1_l05/"
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 --lambdas 0.5 \
  --main-lambda 0.5 --algos grpo --klst "$R/s23/v1_full/klst/router.pt" --out "$R/s23/v1_l05" \
  --results-md "$R/s23/v1_l05_section.md" > "$R/s23/v1_l05.log" 2>&1
PYTHONPATH=. python benchmarks/results/v1_s23/candidates.py "$R/s23/v1_full" \
  "0.02:0.4:$R/s23/v1_full/grpo_l0.02_s0" "0.02:0.4:$R/s23/v1_full/grpo_l0.02_s1" \
  "0.5:0.4:$R/s23/v1_full/grpo_l0.5_s1" "0.5:0.4:$R/s23/v1_full/grpo_l0.5_s2" \
  "0.5:0.4:$R/s23/v1_l05/grpo_l0.5_s0" "0.5:0.4:$R/s23/v1_l05/grpo_l0.5_s1" \
  "0.5:0.4:$R/s23/v1_l05/grpo_l0.5_s2" | tee benchmarks/results/v1_s23/candidates.txt
