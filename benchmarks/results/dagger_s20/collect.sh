#!/usr/bin/env bash
# session 20: KL collections under a behaviour router (DAgger's on-policy data), the same
# train_fit tasks and episode seeds as the collection KL-ST and the kind probe were trained on
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PRECISION_GYM_PLAN_CACHE=/work/runs/s20/plan_cache
R=/work/runs
COMMON="--split train_fit --episodes 240 --seed 0 --shard-size 10 --workers 1"
( s=$(date +%s); precision-gym collect-kl $COMMON --behaviour $R/s17/kind_probe/router.pt --behaviour-budget 0.24 \
    --out $R/s20/kl_probe024 > $R/s20/kl_probe024.log 2>&1; echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> $R/s20/kl_probe024.log ) &
( s=$(date +%s); precision-gym collect-kl $COMMON --behaviour $R/pvg_l05_final/klst/router.pt --behaviour-budget 0.2 \
    --out $R/s20/kl_klst02 > $R/s20/kl_klst02.log 2>&1; echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> $R/s20/kl_klst02.log ) &
wait
