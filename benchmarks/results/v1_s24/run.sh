#!/usr/bin/env bash
# Session 24, DMR-ALFWorld-v1, on the otherwise idle 2-core machine, SIMULATED tiers
# (bf16-sim, w4-sim). R=/work/runs.
#  1. GRPO at lambda 0.5 with session 15's "run B" recipe (sampled at KL-ST's K = 0.7 point
#     with the budget held, GiGPO's step-level advantage, lr 3e-4, 4 epochs, trained on
#     train_fit, one pre-named candidate (the last router) tested on the 154 train_heldout
#     games), 12,000 decisions, 3 seeds; it reuses session 23's KL-ST router and lambda-free
#     units, copied from that run's folder;
#  2. the whole benchmark at its defaults on v1 again, from scratch, with GRPO's rows taken
#     over from KL-ST where a run ships its start (agents.router.routes_alike);
#  3. KL-ST's curve measured densely on v1 (lambda 0.5) against the kind oracle and the last
#     GRPO routers of run 1 and of session 23's 12,000-decision runs at lambda 0.5.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
mkdir -p "$R/s24/v1_gigpo"
cp -r "$R/s23/v1_full"/{fixed_s0,fixed_s1,fixed_s2,kind_s0,kind_s1,kind_s2,online_s0,online_s1,online_s2}.json \
  "$R/s23/v1_full/klst_calibration" "$R/s23/v1_full/plan_cache" "$R/s24/v1_gigpo/"
gigpo() {
  python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 --lambdas 0.5 \
    --main-lambda 0.5 --algos grpo --klst "$R/s23/v1_full/klst/router.pt" --sample-budget 0.7 \
    --grpo-hold-budget --grpo-step-weight 1 --grpo-lr 3e-4 --grpo-epochs 4 \
    --train-split train_fit --select-split train_heldout --rl-eval-episodes 154 \
    --keep-best-rule final --confirm-episodes 0 --grpo-eval-every 100000 --env-steps 12000 \
    --out "$R/s24/v1_gigpo" --results-md "$R/s24/v1_gigpo_section.md"
}
time gigpo > "$R/s24/v1_gigpo.log" 2>&1  # 19.6 min
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 \
  --out "$R/s24/v1_full" --results-md "$R/s24/v1_full_section.md" > "$R/s24/v1_full.log" 2>&1
python benchmarks/results/v1_s24/same_as_s23.py "$R/s23/v1_full" "$R/s24/v1_full" | tee benchmarks/results/v1_s24/same_as_s23.txt
# KL-ST's dense curve and the candidates, all 134 valid_unseen tasks x 3 seeds, at lambda L
matched_hp() {
  python benchmarks/matched_hp.py --env-id DMR-ALFWorld-v1 \
    --klst "$R/s24/v1_full/klst/router.pt" --thresholds 0.002,0.003,0.005,0.01,0.02,0.04 \
    --kind-shares 0,0.1 \
    --grpo-run "GRPO 12k (defaults)=$R/s23/v1_l05/grpo_l0.5_s0" \
    --grpo-run "GRPO 12k (defaults)=$R/s23/v1_l05/grpo_l0.5_s1" \
    --grpo-run "GRPO 12k (defaults)=$R/s23/v1_l05/grpo_l0.5_s2" \
    --grpo-run "GRPO GiGPO held 0.7=$R/s24/v1_gigpo/grpo_l0.5_s0" \
    --grpo-run "GRPO GiGPO held 0.7=$R/s24/v1_gigpo/grpo_l0.5_s1" \
    --grpo-run "GRPO GiGPO held 0.7=$R/s24/v1_gigpo/grpo_l0.5_s2" \
    --split valid_unseen --cost-weight "$1" --jobs 2 --out "$R/s24/v1_mhp"
}
time matched_hp 0.5 > "$R/s24/v1_mhp.log" 2>&1  # 20.3 min: plays the 45 units
# the same units re-scored at lambda 0.1 and 0.02 (seconds: the units are stored)
for L in 0.1 0.02; do matched_hp "$L" > "benchmarks/results/v1_s24/matched_hp_l$L.txt"; done
# run 1's report again with the report code of ef1dcde (the 'final' rule's candidate shown):
# every unit is stored, so only the analysis runs
gigpo > "$R/s24/v1_gigpo_report.log" 2>&1
cp "$R/s24/v1_gigpo_section.md" benchmarks/results/v1_s24/gigpo_section.md
