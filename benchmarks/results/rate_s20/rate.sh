#!/usr/bin/env bash
# session 20: training rate of the benchmark's RL units on a quiet machine, --jobs 2 as the
# full benchmark runs them (the defaults except the decisions and the final evaluation)
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset PRECISION_GYM_PLAN_CACHE
s=$(date +%s)
python benchmarks/ppo_vs_grpo.py --lambdas 0.5 --main-lambda 0.5 --seeds 0 --env-steps 2400 \
  --eval-episodes 16 --klst /work/runs/pvg_l05_final/klst/router.pt --jobs 2 --no-results-md \
  --out /work/runs/s20/rate
echo "rc=$? wall_s=$(( $(date +%s) - s ))"
