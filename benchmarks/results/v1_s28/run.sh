#!/usr/bin/env bash
# Session 28, DMR-ALFWorld-v1, on a fresh 2-core machine (the run folders of earlier sessions
# were not on it), SIMULATED tiers (bf16-sim, w4-sim). R=/work/runs. Code: 1b9a546 (KL-ST's
# curve also plays at --curve-top budgets 0.95 and 0.99).
#  1. the whole benchmark at its defaults on v1, from scratch (KL collection to plots);
#  2. how far a KL-ST router built from scratch moves with the float summation order (2 torch
#     threads) or last-bit differences in its stored embeddings, on step 1's KL collection.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
mkdir -p "$R/s28"
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 \
  --out "$R/s28/v1" --results-md "$R/s28/v1_section.md" > "$R/s28/v1.log" 2>&1
cp "$R/s28/v1_section.md" benchmarks/results/v1_s28/full_section.md
cp "$R/s28/v1/frontiers.png" benchmarks/results/v1_s28/frontiers.png
grep -E "Elapsed|Percent of CPU|Maximum resident" "$R/s28/v1.log" > benchmarks/results/v1_s28/time.txt
python benchmarks/results/v1_s28/klst_sensitivity.py "$R/s28/v1/kl" "$R/s28/sens" \
  "$R/s28/v1/klst/router.pt" | tee benchmarks/results/v1_s28/klst_sensitivity.txt
# 3. GRPO's K = 0.4 cells, whose matched-HP CIs exclude 0 at every lambda in step 1, read
#    against KL-ST measured at thresholds inside their HP gap (step 1's curve has no point
#    between K = 0.4, HP 0.54, and tau 0.0838, HP 0.71): the five runs that ship a refined
#    router at K = 0.4, each on its own seed's episodes, KL-ST at 5 more thresholds and its
#    tau_K on the same episodes; units played once, re-scored at each lambda
mhp() {
  python benchmarks/matched_hp.py --env-id DMR-ALFWorld-v1 --klst "$R/s28/v1/klst/router.pt" \
    --thresholds 0.2,0.17,0.14,0.12,0.1 --no-headroom \
    --router "GRPO l0.02=$R/s28/v1/grpo_l0.02_s0/router.pt#0.4@0" \
    --router "GRPO l0.02=$R/s28/v1/grpo_l0.02_s1/router.pt#0.4@1" \
    --router "GRPO l0.1=$R/s28/v1/grpo_l0.1_s0/router.pt#0.4@0" \
    --router "GRPO l0.1=$R/s28/v1/grpo_l0.1_s1/router.pt#0.4@1" \
    --router "GRPO l0.5=$R/s28/v1/grpo_l0.5_s1/router.pt#0.4@1" \
    --split valid_unseen --cost-weight "$1" --jobs 2 --out "$R/s28/v1_mhp"
}
mhp 0.5 > benchmarks/results/v1_s28/matched_hp_l0.5.txt
for L in 0.1 0.02; do mhp "$L" > "benchmarks/results/v1_s28/matched_hp_l$L.txt"; done
cp "$R/s28/v1_mhp/matched_hp.png" benchmarks/results/v1_s28/matched_hp_l0.02.png  # the last one drawn
