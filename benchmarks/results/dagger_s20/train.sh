#!/usr/bin/env bash
# session 20: routers trained on the paper's collection aggregated with one under their own
# kind of routing (DAgger), side by side
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PRECISION_GYM_PLAN_CACHE=/work/runs/s20/plan_cache
R=/work/runs
( s=$(date +%s); python benchmarks/kind_probe.py --kl $R/pvg_l05_heldout/kl,$R/s20/kl_probe024 \
    --out $R/s20/kind_probe_dagger > $R/s20/kind_probe_dagger.log 2>&1; echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> $R/s20/kind_probe_dagger.log ) &
( s=$(date +%s); precision-gym train-klst --data $R/pvg_l05_heldout/kl,$R/s20/kl_klst02 --out $R/s20/klst_dagger \
    --tau-kl 0.03162277660168379 --epochs 14 --patience 4 --d-model 64 --n-layers 8 --seed 0 --threads 1 --quiet \
    > $R/s20/klst_dagger.log 2>&1 && precision-gym calibrate --router $R/s20/klst_dagger/router.pt --split valid_train \
    --episodes 24 --seed 0 --budgets 0.1,0.2,0.24,0.3,0.4 --quiet >> $R/s20/klst_dagger.log 2>&1;
  echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> $R/s20/klst_dagger.log ) &
wait
