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
cp "$R/s25/v1_scratch_section.md" benchmarks/results/v1_s25/full_section_scratch_run.md
# both reports again with the code of the session's last commit (the curve table's pooled-HP
# column came after step 1, the attainable ceiling's gap over KL-ST's best curve point after
# step 2): every unit is stored, so only the analysis runs (16 s each; the report's "wall
# time for this invocation" is then that of the analysis: the run's own is in time.txt)
for r in v1_full v1_scratch; do
  python benchmarks/ppo_vs_grpo.py --env-id DMR-ALFWorld-v1 --out "$R/s25/$r" \
    --results-md "$R/s25/${r}_section.md" > "$R/s25/${r}_report2.log" 2>&1
done
python benchmarks/results/v1_s25/compare.py "$R/s24/v1_full" "$R/s25/v1_full" "$R/s25/v1_scratch" \
  | tee benchmarks/results/v1_s25/compare.txt
cp "$R/s25/v1_scratch_section.md" benchmarks/results/v1_s25/full_section.md
cp "$R/s25/v1_scratch/frontiers.png" benchmarks/results/v1_s25/frontiers.png
