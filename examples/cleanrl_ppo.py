"""PPO in one file, in the spirit of CleanRL's ppo.py, on the precision-routing env.

The router's problem is an ordinary Gymnasium env: with observation_layout="flat" the
observation is one Box (step embeddings then mask), the action a precision tier (0 =
highest), the reward the paper's Eq. 8 (success - lambda * modeled time, at the end).
The trained actor is saved as an agents.mlp.MLPPolicy file, which
`precision-gym evaluate --router FILE` reads.

    python examples/cleanrl_ppo.py --env DMR-WebShop-v0 --total-timesteps 2048
    precision-gym evaluate --env DMR-WebShop-v0 --router runs/cleanrl_ppo/router.pt
"""

import argparse
import random
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn, optim
from torch.distributions.categorical import Categorical

from agents.mlp import MLPPolicy

parser = argparse.ArgumentParser(description="CleanRL-style PPO on the precision-routing env")
parser.add_argument("--env", default="DMR-WebShop-v0", help="registered env id")
parser.add_argument("--max-steps", type=int, default=30, help="agent steps per episode")
parser.add_argument("--seed", type=int, default=1, help="seed of torch, numpy and the envs")
parser.add_argument("--total-timesteps", type=int, default=2048, help="router decisions")
parser.add_argument("--num-envs", type=int, default=2, help="envs in the vector env")
parser.add_argument("--num-steps", type=int, default=128, help="decisions per env per rollout")
parser.add_argument("--learning-rate", type=float, default=3e-4, help="Adam learning rate")
parser.add_argument("--gamma", type=float, default=0.99, help="discount")
parser.add_argument("--gae-lambda", type=float, default=0.95, help="GAE lambda")
parser.add_argument("--num-minibatches", type=int, default=4, help="minibatches per epoch")
parser.add_argument("--update-epochs", type=int, default=4, help="passes over each rollout")
parser.add_argument("--clip-coef", type=float, default=0.2, help="PPO ratio clip")
parser.add_argument("--ent-coef", type=float, default=0.01, help="entropy bonus weight")
parser.add_argument("--vf-coef", type=float, default=0.5, help="value loss weight")
parser.add_argument("--max-grad-norm", type=float, default=0.5, help="gradient-norm clip")
parser.add_argument("--hidden", type=int, default=64, help="width of the MLP agent")
parser.add_argument("--out", default="runs/cleanrl_ppo/router.pt", help="router file written")
args = parser.parse_args()
batch_size = args.num_envs * args.num_steps
minibatch_size = batch_size // args.num_minibatches
num_iterations = max(1, args.total_timesteps // batch_size)


def make_env(env_id, max_steps):
    def thunk():
        # "precision_gym:" imports the package (and registers the ids) wherever this runs
        return gym.make(f"precision_gym:{env_id}", observation_layout="flat", max_steps=max_steps)

    return thunk


def layer_init(layer, std=2**0.5, bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs):
        super().__init__()
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        n_actions = int(envs.single_action_space.n)
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, args.hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(args.hidden, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, args.hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(args.hidden, n_actions), std=0.01),
        )

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        probs = Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)
envs = gym.vector.SyncVectorEnv(
    [make_env(args.env, args.max_steps) for _ in range(args.num_envs)],
    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,  # CleanRL's classic semantics
)
agent = Agent(envs)
optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

obs = torch.zeros((args.num_steps, args.num_envs, *envs.single_observation_space.shape))
actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long)
logprobs = torch.zeros((args.num_steps, args.num_envs))
rewards = torch.zeros((args.num_steps, args.num_envs))
dones = torch.zeros((args.num_steps, args.num_envs))
values = torch.zeros((args.num_steps, args.num_envs))

global_step, start_time = 0, time.time()
next_obs, _ = envs.reset(seed=args.seed)
next_obs, next_done = torch.Tensor(next_obs), torch.zeros(args.num_envs)
episode_returns, running = [], np.zeros(args.num_envs)
for iteration in range(1, num_iterations + 1):
    frac = 1.0 - (iteration - 1.0) / num_iterations  # learning-rate annealing
    optimizer.param_groups[0]["lr"] = frac * args.learning_rate

    for step in range(args.num_steps):
        global_step += args.num_envs
        obs[step], dones[step] = next_obs, next_done
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(next_obs)
        values[step], actions[step], logprobs[step] = value.flatten(), action, logprob
        next_obs, reward, terminations, truncations, infos = envs.step(action.numpy())
        done = np.logical_or(terminations, truncations)
        rewards[step] = torch.tensor(reward, dtype=torch.float32)
        next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(done.astype(np.float32))
        running += reward
        for i in np.flatnonzero(done):
            episode_returns.append(running[i])
            running[i] = 0.0

    with torch.no_grad():  # generalised advantage estimation
        next_value = agent.get_value(next_obs).reshape(1, -1)
        advantages = torch.zeros_like(rewards)
        lastgaelam = 0
        for t in reversed(range(args.num_steps)):
            nextnonterminal = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
            nextvalues = next_value if t == args.num_steps - 1 else values[t + 1]
            delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
            lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
            advantages[t] = lastgaelam
        returns = advantages + values

    b_obs = obs.reshape((-1, *envs.single_observation_space.shape))
    b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape(-1)
    b_advantages, b_returns, b_values = (
        advantages.reshape(-1),
        returns.reshape(-1),
        values.reshape(-1),
    )
    b_inds = np.arange(batch_size)
    for _epoch in range(args.update_epochs):  # the clipped PPO objective on minibatches
        np.random.shuffle(b_inds)
        for start in range(0, batch_size, minibatch_size):
            mb = b_inds[start : start + minibatch_size]
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
            ratio = (newlogprob - b_logprobs[mb]).exp()
            mb_adv = b_advantages[mb]
            mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
            pg_loss = torch.max(
                -mb_adv * ratio,
                -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef),
            ).mean()
            v_loss = 0.5 * ((newvalue.view(-1) - b_returns[mb]) ** 2).mean()
            loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()

    recent = np.mean(episode_returns[-20:]) if episode_returns else float("nan")
    print(
        f"iteration {iteration}/{num_iterations}: decisions {global_step} "
        f"episodes {len(episode_returns)} return(last 20) {recent:+.3f} "
        f"loss {loss.item():.4f} SPS {int(global_step / (time.time() - start_time))}"
    )

envs.close()
MLPPolicy.from_modules(agent.actor, layout="flat", metadata={"trained_with": "cleanrl_ppo"}).save(
    args.out
)
print(f"saved {args.out}\nevaluate: precision-gym evaluate --env {args.env} --router {args.out}")
