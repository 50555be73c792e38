#!/usr/bin/env bash
# issue 11 part 4's wall time: one reduced benchmark, planner answers shared across units or
# not, both at once (jobs 2 each: two unit processes each, the same load)
cd /work/main
export ALFWORLD_DATA=/work/shared/alfworld HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset PRECISION_GYM_PLAN_CACHE
COMMON="--lambdas 0.5 --main-lambda 0.5 --seeds 0 --env-steps 1000 --eval-episodes 0
 --calib-episodes 12 --rl-eval-episodes 16 --confirm-episodes 16 --grpo-eval-every 2
 --ppo-eval-freq 512 --klst /work/runs/pvg_l05_final/klst/router.pt --jobs 2 --no-results-md"
for mode in off shared; do
  pc=off; [ $mode = shared ] && pc=""
  ( s=$(date +%s); python benchmarks/ppo_vs_grpo.py $COMMON --out /work/runs/s19/pc134/$mode \
      ${pc:+--plan-cache $pc} > /work/runs/s19/pc134/$mode.log 2> /work/runs/s19/pc134/$mode.err;
    echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> /work/runs/s19/pc134/$mode.log ) &
done
wait
