#!/usr/bin/env bash
# Session 26, DMR-WebShop-v0 with search steps routed (the paper's GRPO setting), on the
# 2-core machine, SIMULATED tiers (bf16-sim, w4-sim). R=/work/runs.
#  1. the whole benchmark on WebShop at a smaller budget than ALFWorld's (part 5): 6,000
#     decisions per algorithm and seed at lambda 0.1, 3,000 at 0.02 and 0.5; every router on
#     the 19 test tasks x 4 episode seeds per run (12 in all), with KL-ST's measured curve;
#  2. its report again with the code of the session's last commit (KL-ST at the same HP read
#     run by run; simultaneous intervals over the (K, lambda) cells; KL-ST's curve with its
#     top end, threshold 0): in a copy of the folder without its three curve units, so only
#     they play (1.8 min), then the analysis;
#  3. a replication of the one GRPO cell whose matched-HP CI excluded 0 (lambda 0.5, K 0.4):
#     GRPO only, the same KL-ST router, new training seeds 12-14 and new episode seeds
#     (s, s + 15, s + 30, s + 45), read run by run (re-analysed with ca285ee, before the top
#     end: every GRPO row there is KL-ST's, so the top end changes none of its GRPO figures).
# Steps 1 and 3 ran with ef5e5ae (session 25's last commit: HP pooled over the runs).
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
mkdir -p "$R/s26"
WS=(--env-id DMR-WebShop-v0 --env-kwargs '{"task_kwargs": {"force_high_on_search": false}}'
    --eval-split test --eval-episodes 0 --eval-seeds-per-run 4 --calib-split eval
    --calib-episodes 19 --kl-episodes 120 --jobs 2)
FULL=(--lambdas 0.02,0.1,0.5 --main-lambda 0.1 --env-steps 6000 --other-env-steps 3000)
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py "${WS[@]}" "${FULL[@]}" \
  --out "$R/s26/webshop" --results-md "$R/s26/webshop_section.md" > "$R/s26/webshop.log" 2>&1
cp "$R/s26/webshop_section.md" benchmarks/results/ws_s26/full_section_scratch_run.md
cp -r "$R/s26/webshop" "$R/s26/webshop_top"  # re-analysed in a copy: the run's own report stays
rm "$R/s26/webshop_top"/curve_s*.json  # measured without the top end: refused, so redone
python benchmarks/ppo_vs_grpo.py "${WS[@]}" "${FULL[@]}" \
  --out "$R/s26/webshop_top" --results-md "$R/s26/webshop_top_section.md"
cp "$R/s26/webshop_top_section.md" benchmarks/results/ws_s26/full_section.md
cp "$R/s26/webshop_top/frontiers.png" benchmarks/results/ws_s26/frontiers.png
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py "${WS[@]}" --klst "$R/s26/webshop/klst/router.pt" \
  --algos grpo --seeds 12,13,14 --lambdas 0.5 --main-lambda 0.5 --env-steps 3000 \
  --out "$R/s26/webshop_rep" --results-md "$R/s26/webshop_rep_section.md" > "$R/s26/webshop_rep.log" 2>&1
cp -r "$R/s26/webshop_rep" "$R/s26/webshop_rep_byrun"
git -c advice.detachedHead=false worktree add --detach "$R/s26/wt_ca285ee" ca285ee
(cd "$R/s26/wt_ca285ee" && python benchmarks/ppo_vs_grpo.py "${WS[@]}" --klst "$R/s26/webshop/klst/router.pt" \
  --algos grpo --seeds 12,13,14 --lambdas 0.5 --main-lambda 0.5 --env-steps 3000 \
  --out "$R/s26/webshop_rep_byrun" --results-md "$R/s26/webshop_rep_byrun_section.md")
git worktree remove "$R/s26/wt_ca285ee"
cp "$R/s26/webshop_rep_byrun_section.md" benchmarks/results/ws_s26/replication_section.md
