"""Plug in your own algorithm: REINFORCE on the precision-routing env in ~40 lines.

Any torch module mapping (embeddings [B, L, d], mask [B, L]) -> logits over tiers can be
trained against ``gym.make("DMR-ALFWorld-v0")``; saving it as a ``TransformerRouterPolicy``
file makes ``precision-gym evaluate --router FILE`` evaluate it like every other router.
SIMULATED precision pair by default.
"""

import argparse

import gymnasium as gym
import torch

import precision_gym  # noqa: F401  (registers DMR-ALFWorld-v0 / DMR-WebShop-v0)
from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--env", default="DMR-ALFWorld-v0", help="registered env id")
parser.add_argument("--split", default="train", help="split the training tasks come from")
parser.add_argument("--episodes", type=int, default=200, help="training episodes")
parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
parser.add_argument("--seed", type=int, default=0, help="seed of torch and the env")
parser.add_argument("--out", default="runs/reinforce/router.pt", help="router file written")
args = parser.parse_args()

env = gym.make(args.env)
torch.manual_seed(args.seed)
u = env.unwrapped
config = RouterConfig(embed_dim=u.embedding_dim, max_len=u.max_history, d_model=32,
                      n_layers=1, n_heads=2, dropout=0.0, n_tiers=int(env.action_space.n))  # fmt: skip
policy = TransformerRouter(config)
optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)
baseline = 0.0  # running mean of returns: REINFORCE's variance reduction
for episode in range(args.episodes):
    obs, _ = env.reset(seed=args.seed * 100_003 + episode, options={"split": args.split})
    log_probs, ret, done = [], 0.0, False
    while not done:
        emb, mask = torch.as_tensor(obs["embeddings"])[None], torch.as_tensor(obs["mask"])[None]
        dist = torch.distributions.Categorical(logits=policy(emb, mask)[0])
        action = dist.sample()
        log_probs.append(dist.log_prob(action))
        obs, reward, terminated, truncated, info = env.step(int(action))
        ret, done = ret + float(reward), terminated or truncated  # return = success - lambda*T
    loss = -(ret - baseline) * torch.stack(log_probs).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    baseline = 0.9 * baseline + 0.1 * ret
    if episode % 10 == 0 or episode == args.episodes - 1:
        print(
            f"episode {episode}: return {ret:+.3f} won {info['won']} hp {info['hp_fraction']:.2f}"
        )

TransformerRouterPolicy(policy, metadata={"trained_with": "REINFORCE"}).save(args.out)
print(f"saved {args.out}\nevaluate: precision-gym evaluate --env {args.env} --router {args.out}")
