"""Stable-Baselines3 / sb3-contrib on the precision-routing env, with SB3's own helpers.

`make_vec_env("DMR-WebShop-v0")` works unchanged (SB3 passes render_mode="rgb_array": the env
draws its transcript). Each algorithm reads the observation layout that suits it:

    python examples/sb3_ppo.py --algo ppo           # PPO, MlpPolicy on the "flat" layout
    python examples/sb3_ppo.py --algo recurrentppo  # RecurrentPPO, an LSTM over "last"
    python examples/sb3_ppo.py --algo maskableppo   # MaskablePPO: no ActionMasker needed
    precision-gym evaluate --env DMR-WebShop-v0 --router runs/sb3/recurrentppo.zip \
        --trust-checkpoint --env-kwargs '{"observation_layout": "last"}'
"""

import argparse

from stable_baselines3.common.env_util import make_vec_env

import precision_gym  # noqa: F401  (registers DMR-ALFWorld-v0 / DMR-WebShop-v0)

parser = argparse.ArgumentParser(description="SB3-family PPO on the precision-routing env")
parser.add_argument(
    "--algo", default="ppo", choices=["ppo", "recurrentppo", "maskableppo"], help="SB3 algorithm"
)
parser.add_argument("--env", default="DMR-WebShop-v0", help="registered env id")
parser.add_argument("--layout", default=None, help="observation layout (default: per algo)")
parser.add_argument("--max-steps", type=int, default=30, help="agent steps per episode")
parser.add_argument("--total-timesteps", type=int, default=2048, help="router decisions")
parser.add_argument("--n-envs", type=int, default=2, help="envs in the vector env")
parser.add_argument("--n-steps", type=int, default=128, help="decisions per env per rollout")
parser.add_argument("--seed", type=int, default=0, help="seed of the envs and the model")
parser.add_argument("--out", default=None, help="model path (default runs/sb3/<algo>.zip)")
args = parser.parse_args()

if args.algo == "ppo":
    from stable_baselines3 import PPO as Algo

    policy, layout, policy_kwargs = "MlpPolicy", "flat", {"net_arch": [64]}
elif args.algo == "recurrentppo":
    from sb3_contrib import RecurrentPPO as Algo

    # the LSTM carries the history itself: it reads only the latest step's embedding
    policy, layout, policy_kwargs = "MlpLstmPolicy", "last", {"lstm_hidden_size": 64}
else:
    from sb3_contrib import MaskablePPO as Algo  # the env's action_masks(): all tiers valid

    policy, layout, policy_kwargs = "MlpPolicy", "mean", {"net_arch": [64]}
layout = args.layout or layout

venv = make_vec_env(
    args.env,
    n_envs=args.n_envs,
    seed=args.seed,
    env_kwargs={"observation_layout": layout, "max_steps": args.max_steps},
)
model = Algo(
    policy,
    venv,
    n_steps=args.n_steps,
    batch_size=args.n_steps,
    n_epochs=4,
    seed=args.seed,
    device="cpu",
    policy_kwargs=policy_kwargs,
    verbose=1,
)
model.learn(total_timesteps=args.total_timesteps)
out = args.out or f"runs/sb3/{args.algo}.zip"
model.save(out)
venv.close()
print(
    f"saved {out}\nevaluate: precision-gym evaluate --env {args.env} --router {out} "
    "--trust-checkpoint "
    f'--env-kwargs \'{{"observation_layout": "{layout}"}}\''
)
