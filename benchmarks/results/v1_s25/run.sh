#!/usr/bin/env bash
# Session 25, DMR-ALFWorld-v1, on the 2-core machine, SIMULATED tiers (bf16-sim, w4-sim).
# R=/work/runs.
#  1. session 24's run folder with KL-ST's measured curve added (--curve-points 3, the new
#     default: only the three curve_s<seed> units play; every other unit is session 24's);
#  2. the whole benchmark at its defaults on v1 again, from scratch;
#  3. what the curve changed (1 against session 24), and that 2 equals 1.
set -euo pipefail
R=${R:-/work/runs}
cd "$(dirname "$0")/../../.."
mkdir -p "$R/s25"
cp -r "$R/s24/v1_full" "$R/s25/v1_full"
rm -f "$R/s25/v1_full/results.json" "$R/s25/v1_full/results.md"
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 \
  --out "$R/s25/v1_full" --results-md "$R/s25/v1_full_section.md" > "$R/s25/v1_full.log" 2>&1
/usr/bin/time -v python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 \
  --out "$R/s25/v1_scratch" --results-md "$R/s25/v1_scratch_section.md" > "$R/s25/v1_scratch.log" 2>&1
# the resumed run's report again with the code of the commit (the curve table's pooled-HP
# column came after step 1): every unit is stored, so only the analysis runs (16 s)
python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 --out "$R/s25/v1_full" \
  --results-md "$R/s25/v1_full_section.md" > "$R/s25/v1_report.log" 2>&1
python benchmarks/results/v1_s25/compare.py "$R/s24/v1_full" "$R/s25/v1_full" "$R/s25/v1_scratch" \
  | tee benchmarks/results/v1_s25/compare.txt
cp "$R/s25/v1_scratch_section.md" benchmarks/results/v1_s25/full_section.md
cp "$R/s25/v1_scratch/frontiers.png" benchmarks/results/v1_s25/frontiers.png
