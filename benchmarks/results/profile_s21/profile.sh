#!/usr/bin/env bash
# session 21: where a benchmark GRPO unit's time goes. The KL-ST router is the one the
# benchmark builds at its defaults (rate.log: ppo_vs_grpo.py --lambdas 0.5 --main-lambda 0.5
# --seeds 0 --env-steps 2400 --eval-episodes 16 --jobs 2 --out $R/s21/rate); the unit is its
# GRPO command at 1,500 decisions, alone on the machine, under cProfile, with no plan cache
# (every search is a new one, as on a state no process has reached yet).
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset PRECISION_GYM_PLAN_CACHE
R=/work/runs
python -m cProfile -o $R/s21/prof_grpo.pstats -m training.cli train-grpo --env-id DMR-ALFWorld-v0 \
  --seed 0 --cost-weight 0.5 --no-progress --sample-budget 0.4 --split train --eval-split valid_train \
  --eval-episodes 32 --keep-best-rule paired --keep-best-level 0.9 --confirm-episodes 32 \
  --init-checkpoint $R/s21/rate/klst/router.pt --out $R/s21/prof_grpo --total-env-steps 1500 \
  --max-updates 100000 --group-size 8 --tasks-per-batch 4 --lr 0.0001 --epochs 2 --advantage-norm none \
  --kl-coef 0.05 --eval-every 5 --step-advantage-weight 0.0 --step-gamma 0.95 \
  --budgets 0.1,0.2,0.4,0.7,0.9 --calibration-split valid_train --calibration-episodes 24 \
  --calibration-seed 0 --keep-best-per-budget
python -c "import pstats; pstats.Stats('$R/s21/prof_grpo.pstats').sort_stats('cumulative').print_stats(60)" \
  | sed 's#/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/##; s#/work/main/##' \
  > benchmarks/results/profile_s21/profile_cumulative.txt
# the planner's search in a forked child against in-process, on the same states
python benchmarks/results/profile_s21/fork_vs_inproc.py > benchmarks/results/profile_s21/fork_vs_inproc.txt
