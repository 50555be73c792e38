#!/usr/bin/env bash
# session 21: the full benchmark's non-training parts at full scale (all 134 valid_unseen
# tasks, 3 lambdas, every fixed, RL and held-K unit) for one seed, with the RL units cut to
# 600 decisions, --jobs 2 on the otherwise idle 2-core machine. The KL-ST router is the one
# the benchmark built at its defaults in $R/s21/rate (session 21's rate check, ~6 minutes).
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset PRECISION_GYM_PLAN_CACHE
R=/work/runs
python benchmarks/ppo_vs_grpo.py --seeds 0 --env-steps 600 --other-env-steps 600 --jobs 2 \
  --klst $R/s21/rate/klst/router.pt --no-results-md --out $R/s21/evalcost
