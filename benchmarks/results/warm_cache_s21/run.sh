#!/usr/bin/env bash
# session 21: a rerun of the benchmark's GRPO unit with one hyperparameter changed (lr 1e-4 ->
# 3e-4), same seed and start router, with the previous run's plan folder (a copy: "warm") and
# with an empty one ("cold"), both at once (equal load), one process each.
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
R=/work/runs
cp -r $R/s21/rate/plan_cache $R/s21/warm/plan_cache_warm   # filled by the lr 1e-4 run (rate.log)
mkdir -p $R/s21/warm/plan_cache_cold
for m in warm cold; do
  PRECISION_GYM_PLAN_CACHE=$R/s21/warm/plan_cache_$m OMP_NUM_THREADS=1 python -m training.cli \
    train-grpo --env-id DMR-ALFWorld-v0 --seed 0 --cost-weight 0.5 --no-progress \
    --sample-budget 0.4 --split train --eval-split valid_train --eval-episodes 32 \
    --keep-best-rule paired --keep-best-level 0.9 --confirm-episodes 32 \
    --init-checkpoint $R/s21/rate/klst/router.pt --total-env-steps 2400 --max-updates 100000 \
    --group-size 8 --tasks-per-batch 4 --lr 0.0003 --epochs 2 --advantage-norm none \
    --kl-coef 0.05 --eval-every 5 --step-advantage-weight 0.0 --step-gamma 0.95 \
    --budgets 0.1,0.2,0.4,0.7,0.9 --calibration-split valid_train --calibration-episodes 24 \
    --calibration-seed 0 --keep-best-per-budget --out $R/s21/warm/grpo_$m > $R/s21/warm/$m.log 2>&1 &
done
wait
