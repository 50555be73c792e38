"""RLlib PPO (new API stack) on the precision-routing env, exported for `precision-gym evaluate`.

Run it in a Python with ray[rllib] (`pip install "precision-gym[rllib]"`, or the venv of
scripts/setup_rllib.sh: Ray pins its own gymnasium), then evaluate the exported router file
with the same command as every other router.
"""

import argparse

import precision_gym.rllib
from training.rllib_export import rllib_module_to_mlp

parser = argparse.ArgumentParser(description="RLlib PPO on the precision-routing env")
parser.add_argument("--env", default="DMR-WebShop-v0", help="registered env id")
parser.add_argument("--max-steps", type=int, default=30, help="agent steps per episode")
parser.add_argument("--iterations", type=int, default=5, help="PPO training iterations")
parser.add_argument("--batch", type=int, default=400, help="router decisions per iteration")
parser.add_argument("--env-runners", type=int, default=1, help="remote env-runner processes")
parser.add_argument(
    "--sample-timeout-s",
    type=float,
    default=600.0,
    help="how long an iteration waits for its env runners' samples (RLlib's 60 s default "
    "returns an empty iteration when a runner's first env start is slow: encoder load, busy "
    "machine)",
)
parser.add_argument("--seed", type=int, default=0, help="RLlib's seed")
parser.add_argument("--out", default="runs/rllib/router.pt", help="router file written")
args = parser.parse_args()

import ray  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402

ray.init(num_cpus=args.env_runners + 1, include_dashboard=False, log_to_driver=False)
precision_gym.rllib.register_envs()  # Tune names = the env ids; the creator picks layout "flat"
config = (
    PPOConfig()
    .environment(args.env, env_config={"max_steps": args.max_steps})
    .env_runners(
        num_env_runners=args.env_runners,
        num_envs_per_env_runner=1,
        sample_timeout_s=args.sample_timeout_s,
    )
    .training(train_batch_size=args.batch, minibatch_size=min(128, args.batch), num_epochs=2)
    .rl_module(model_config={"fcnet_hiddens": [64], "fcnet_activation": "tanh"})
    .debugging(seed=args.seed)
)
algo = config.build_algo()
for i in range(args.iterations):
    result = algo.train()
    runners = result["env_runners"]
    print(
        f"iteration {i}: decisions {runners['num_env_steps_sampled_lifetime']} "
        f"episodes {runners.get('num_episodes_lifetime', 0)} "
        f"return {runners.get('episode_return_mean', float('nan')):+.3f}"
    )

# the actor (encoder -> logits) as a portable, tensors-only file that evaluate reads
rllib_module_to_mlp(algo.get_module(), layout="flat").save(args.out)
algo.stop()
ray.shutdown()
print(f"saved {args.out}\nevaluate: precision-gym evaluate --env {args.env} --router {args.out}")
