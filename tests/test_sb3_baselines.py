"""SB3 baselines on DMR-WebShop-v0: PPO with MultiInputPolicy and with the router encoder,
saved, loaded through the CLI's loader and evaluated."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from precision_gym.error import ConfigError
from training.sb3_baselines import SB3Config, TaskPoolWrapper, train_sb3


@pytest.mark.parametrize("features", ["mlp", "router"])
def test_ppo_trains_saves_loads_and_evaluates(tmp_path, features):
    from training.evaluation import evaluate
    from training.policies import SB3Policy, load_policy_file

    cfg = SB3Config(
        algo="ppo",
        env_id="DMR-WebShop-v0",
        pool_size=4,
        total_timesteps=64,
        features=features,
        d_model=16,
        n_layers=1,
        n_heads=2,
        algo_kwargs={"n_steps": 32, "batch_size": 16, "n_epochs": 1},
        checkpoint_freq=32,
        out=str(tmp_path),
        progress=False,
    )
    summary = train_sb3(cfg)
    assert summary["env_steps"] == 64
    assert (tmp_path / "model.zip").exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "ppo_32_steps.zip",
        "ppo_64_steps.zip",
    ]
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))
    rows = [json.loads(x) for x in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert rows and {"env_steps", "return", "won", "hp_fraction"} <= set(rows[0])
    if features == "router":
        from stable_baselines3 import PPO

        from agents.sb3 import RouterFeaturesExtractor

        model = PPO.load(tmp_path / "model.zip", device="cpu")
        assert isinstance(model.policy.features_extractor, RouterFeaturesExtractor)

    env = gym.make("DMR-WebShop-v0")
    policy = load_policy_file(tmp_path / "model.zip", env, trust_checkpoint=True)
    assert isinstance(policy, SB3Policy)
    result = evaluate(policy, env, split="test", episodes=1, seeds=[0], progress=False)
    summary = result.summary()
    assert 0.0 <= summary["hp_fraction"] <= 1.0 and len(result.records) == 1
    env.close()


def test_router_features_extractor_reads_both_layouts():
    import torch
    from gymnasium import spaces

    from agents.sb3 import RouterFeaturesExtractor

    torch.manual_seed(0)
    box = spaces.Box(-1.0, 1.0, shape=(8, 6), dtype=np.float32)
    flat = spaces.Box(-1.0, 1.0, shape=(48,), dtype=np.float32)
    mask = spaces.Box(0.0, 1.0, shape=(8,), dtype=np.float32)
    kw = dict(d_model=8, n_layers=1, n_heads=2)
    ext = RouterFeaturesExtractor(spaces.Dict({"embeddings": box, "mask": mask}), **kw)
    flat_ext = RouterFeaturesExtractor(spaces.Dict({"embeddings": flat, "mask": mask}), **kw)
    flat_ext.load_state_dict(ext.state_dict())
    emb = torch.rand(3, 8, 6)
    m = torch.zeros(3, 8)
    m[0, :2] = m[1, :8] = 1.0  # row 2: all padding (SB3 builds networks on zeros)
    out = ext({"embeddings": emb, "mask": m})
    assert out.shape == (3, 8) and ext.features_dim == 8
    torch.testing.assert_close(out, flat_ext({"embeddings": emb.reshape(3, -1), "mask": m}))
    # padding after the last valid step does not change the features
    emb2 = emb.clone()
    emb2[0, 2:] = 0.5
    torch.testing.assert_close(ext({"embeddings": emb2, "mask": m})[0], out[0])


def test_task_pool_wrapper_draws_only_pool_tasks():
    env = TaskPoolWrapper(gym.make("DMR-WebShop-v0", max_steps=2), "train", [3, 5])
    seen = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        seen.add(info["task_index"])
        assert info["split"] == "train"
    assert seen <= {3, 5}
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algo": "sac"}, r"algo must be one of \('ppo', 'a2c', 'dqn'\), got 'sac'"),
        ({"features": "cnn"}, r"features must be 'router' or 'mlp', got 'cnn'"),
        ({"total_timesteps": 0}, r"total_timesteps and n_envs must be >= 1, got 0, 1"),
        ({"cost_weight": -1.0}, r"cost_weight \(lambda\) must be >= 0, got -1.0"),
    ],
)
def test_sb3_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SB3Config(**kwargs)


def _tiny(tmp_path, algo: str, name: str, **kw) -> SB3Config:
    kwargs = {"ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1}, "a2c": {"n_steps": 8}}
    return SB3Config(
        algo=algo,
        env_id="DMR-WebShop-v0",
        pool_size=3,
        total_timesteps=32,
        features="mlp",
        algo_kwargs={**kwargs.get(algo, {"learning_starts": 8, "train_freq": 4}), **kw},
        out=str(tmp_path / name),
        progress=False,
        seed=3,
    )


def test_ppo_same_seed_same_run(tmp_path):
    import torch

    runs = []
    for name in ("a", "b"):
        train_sb3(_tiny(tmp_path, "ppo", name))
        rows = (tmp_path / name / "episodes.jsonl").read_text()
        from stable_baselines3 import PPO

        model = PPO.load(tmp_path / name / "model.zip", device="cpu")
        runs.append((rows, [p.detach().clone() for p in model.policy.parameters()]))
    assert runs[0][0] == runs[1][0]  # same episodes, returns and routing
    assert all(torch.equal(x, y) for x, y in zip(runs[0][1], runs[1][1], strict=True))


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_a2c_and_dqn_train_and_save(tmp_path, algo):
    summary = train_sb3(_tiny(tmp_path, algo, algo))
    assert summary["env_steps"] >= 32 and (tmp_path / algo / "model.zip").exists()


# ----------------------------------------------------------------------------- same start (issue 11)


def _router_file(tmp_path, env):
    import torch

    from agents.router import RouterConfig, TransformerRouter, TransformerRouterPolicy

    torch.manual_seed(1)
    u = env.unwrapped
    router = TransformerRouter(
        RouterConfig(
            embed_dim=u.embedding_dim, max_len=u.max_history, d_model=16, n_layers=1,
            n_heads=2, dropout=0.0, n_tiers=int(env.action_space.n),
        )
    )  # fmt: skip
    with torch.no_grad():
        router.head.bias.copy_(torch.tensor([-1.0, 0.5]))  # a router that prefers low
    return router, TransformerRouterPolicy(router, thresholds={"0.4": 0.3}).save(
        tmp_path / "klst.pt"
    )


def _ppo_from_router(tmp_path, path, **kw):
    from training.sb3_baselines import make_model, make_sb3_vec_env

    cfg = SB3Config(
        env_id="DMR-WebShop-v0", pool_size=2, router_checkpoint=str(path),
        out=str(tmp_path / "ppo"), tensorboard=False, progress=False, **kw,
    )  # fmt: skip
    venv = make_sb3_vec_env(cfg)
    try:
        return make_model(cfg, venv)
    finally:
        venv.close()


@pytest.mark.parametrize("budget", [None, 0.4])
def test_ppo_starts_from_the_routers_routing(tmp_path, budget):
    """Encoder AND action head come from the router: the SB3 policy's logits equal the
    router's (+ the budget's operating-point bias), so PPO and GRPO start alike."""
    import torch

    from training.grpo import budget_bias

    env = gym.make("DMR-WebShop-v0")
    router, path = _router_file(tmp_path, env)
    model = _ppo_from_router(tmp_path, path, sample_budget=budget)
    obs, _ = env.reset(seed=0, options={"split": "test", "task_index": 0})
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        sb3_logits = model.policy.get_distribution(obs_t).distribution.logits
        expected = router.eval()(
            torch.as_tensor(obs["embeddings"])[None], torch.as_tensor(obs["mask"])[None]
        )
    shift = budget_bias(str(path), budget) if budget else 0.0
    expected = expected + torch.tensor([shift, 0.0])
    torch.testing.assert_close(
        torch.log_softmax(sb3_logits, -1), torch.log_softmax(expected, -1), atol=1e-5, rtol=0
    )
    # the value function has its own copy of the encoder: value regression cannot move routing
    assert model.policy.pi_features_extractor is not model.policy.vf_features_extractor
    env.close()


def test_same_start_needs_a_router_and_an_actor_critic():
    with pytest.raises(
        ConfigError, match=r"sample_budget needs the policy initialised from a router"
    ):
        SB3Config(algo="dqn", router_checkpoint="r.pt", sample_budget=0.4)
    with pytest.raises(ConfigError, match=r"eval_freq must be >= 0 and eval_episodes >= 1"):
        SB3Config(eval_freq=-1)
    with pytest.raises(ConfigError, match=r"keep_best_rule must be one of"):
        SB3Config(keep_best_rule="best")


@pytest.mark.parametrize("rule", ["paired", "mean"])
def test_ppo_keeps_its_best_evaluated_model(tmp_path, rule):
    """With keep_best, model.zip is the evaluated model its rule chooses (the start included):
    a destructive learning rate cannot ship a model worse than the start on the eval split."""
    from training.selection import select_best

    cfg = _tiny(tmp_path, "ppo", "kb", learning_rate=0.5)
    cfg.eval_freq, cfg.eval_episodes, cfg.keep_best_rule = 16, 3, rule
    cfg.confirm_episodes = 0
    summary = train_sb3(cfg)
    evals = summary["evaluations"]
    assert [e["env_steps"] for e in evals] == [0, 16, 32]
    assert all(len(e["returns"]) == 3 for e in evals)
    chosen = next(e for e in evals if e["env_steps"] == summary["selected_env_steps"])
    assert chosen == evals[select_best(evals, rule=rule)]
    assert chosen["utility"] >= evals[0]["utility"]
    if rule == "mean":
        assert chosen["utility"] == max(e["utility"] for e in evals)
    out = tmp_path / "kb"
    assert (out / "model.zip").read_bytes() == (out / "best_model.zip").read_bytes()
    assert len((out / "eval.jsonl").read_text().splitlines()) == 3
    assert summary["confirmation"] is None and not (out / "confirmation.json").exists()


def test_final_rule_puts_the_start_model_back(tmp_path, monkeypatch):
    """keep_best_rule='final': the model at step 16 beats the start and is saved as best while
    it is the newest; the last one then fails the bound, so model.zip is the start model
    (scripted evaluation rows: +0.5 on every episode at step 16, -0.1 at the end)."""
    import training.selection

    base = np.linspace(-1.0, 1.0, 8)
    offsets = iter([0.0, 0.5, -0.1])

    def scripted(records, split):
        returns = (base + next(offsets)).tolist()
        return {"split": split, "episodes": 8, "utility": float(np.mean(returns)),
                "success_rate": 1.0, "hp_fraction": 0.5, "returns": returns}  # fmt: skip

    monkeypatch.setattr(training.selection, "eval_row", scripted)
    cfg = _tiny(tmp_path, "ppo", "f", learning_rate=0.5)
    cfg.eval_freq, cfg.eval_episodes, cfg.keep_best_rule, cfg.confirm_episodes = 16, 2, "final", 0
    summary = train_sb3(cfg)
    assert [e["env_steps"] for e in summary["evaluations"]] == [0, 16, 32]
    assert summary["selected_env_steps"] == 0
    out = tmp_path / "f"
    start = (out / "start_model.zip").read_bytes()
    assert (out / "best_model.zip").read_bytes() == start
    assert (out / "model.zip").read_bytes() == start
    assert (out / "final_model.zip").read_bytes() != start


@pytest.mark.parametrize(("seed", "shipped"), [(4, "refined"), (3, "start")])
def test_kept_model_is_confirmed_on_fresh_episodes_or_the_start_ships(tmp_path, seed, shipped):
    """confirm_episodes: a later model that keep-best kept is played again, with the start
    model, on tasks the evaluations did not use; model.zip is the kept model only where the
    rule holds there too (seed 4), else the start model saved before training (seed 3)."""
    import torch
    from stable_baselines3 import PPO

    from training.selection import eval_plan, select_best

    cfg = _tiny(tmp_path, "ppo", "c", learning_rate=0.5)
    cfg.eval_freq, cfg.eval_episodes, cfg.keep_best_rule = 16, 3, "mean"
    cfg.seed, cfg.confirm_episodes = seed, 6
    summary = train_sb3(cfg)
    evals, out = summary["evaluations"], tmp_path / "c"
    assert evals[select_best(evals, rule="mean")]["env_steps"] == 32  # a later model kept ...
    conf = json.loads((out / "confirmation.json").read_text())
    assert summary["confirmation"] == conf and conf["env_steps"] == 32
    assert len(conf["tasks"]) == 6 and not set(conf["tasks"]) & set(eval_plan(19, 3, seed)[0])
    rows = conf["rows"]
    assert conf["router"] == (
        "refined" if select_best([rows["start"], rows["refined"]], rule="mean") else "start"
    )
    assert conf["router"] == shipped  # ... and the fresh episodes decide
    source = {"refined": "best_model.zip", "start": "start_model.zip"}[shipped]
    assert (out / "model.zip").read_bytes() == (out / source).read_bytes()
    assert summary["selected_env_steps"] == {"refined": 32, "start": 0}[shipped]
    # the model training ended with is on disk whatever ships: here the kept one, whose row
    # (step 32) is evaluated after the last update
    final, kept = (PPO.load(out / f) for f in ("final_model.zip", "best_model.zip"))
    for name, value in kept.policy.state_dict().items():
        assert torch.equal(final.policy.state_dict()[name], value), name
    with pytest.raises(ConfigError, match="confirm_episodes must be >= 0, got -2"):
        SB3Config(confirm_episodes=-2)


def test_router_encoder_weights_survive_sb3_init(tmp_path):
    """SB3's orthogonal init re-drew the router encoder's Linear layers (found in issue 11):
    with a router checkpoint the features extractor keeps the trained weights."""
    import torch

    env = gym.make("DMR-WebShop-v0")
    router, path = _router_file(tmp_path, env)
    env.close()
    model = _ppo_from_router(tmp_path, path, init_policy=False)
    got = model.policy.features_extractor.router.state_dict()
    for name, value in router.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(got[name], value), name
