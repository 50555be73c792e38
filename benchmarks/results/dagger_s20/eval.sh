#!/usr/bin/env bash
# session 20: the DAgger-trained routers against KL-ST's curve on all 134 valid_unseen tasks x
# 3 seeds (session 16's curve and kind-oracle units and session 17's probe units copied in)
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PRECISION_GYM_PLAN_CACHE=/work/runs/s20/plan_cache
R=/work/runs
ARGS=()
for S in 0 1 2; do
  for K in 0.2 0.24; do ARGS+=(--router "kind probe at K $K=$R/s17/kind_probe/router.pt#$K@$S"); done
  for K in 0.2 0.24; do ARGS+=(--router "kind probe + DAgger at K $K=$R/s20/kind_probe_dagger/router.pt#$K@$S"); done
  for K in 0.1 0.2 0.24; do ARGS+=(--router "KL-ST + DAgger at K $K=$R/s20/klst_dagger/router.pt#$K@$S"); done
done
s=$(date +%s)
python benchmarks/matched_hp.py --klst $R/pvg_l05_final/klst/router.pt \
  --thresholds 0.002,0.08,0.12,0.15,0.18,0.2,0.22,0.25,0.3,0.5,0.7,0.75 --kind-shares 0,0.1,0.3 \
  --cost-weight 0.5 --jobs 2 --out $R/s20/mhp "${ARGS[@]}"
echo "rc=$? wall_s=$(( $(date +%s) - s ))"
