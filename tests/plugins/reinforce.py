"""REINFORCE with a learned baseline (Williams 1992), written against mpirl's plug-in surface
alone (``mpirl.algos.api`` and ``mpirl.algos.registry``): its options, policy, collector,
message and trainer live here, and one ``register`` call makes it ``--algo reinforce``::

    MPIRL_PLUGINS=plugins.reinforce mpirun -n 3 python -m mpirl.train --algo reinforce

Acting ranks step their envs for --n-steps steps with a softmax policy and send the segment.
Learners compute discounted returns to go within each segment, bootstrapped from the baseline
where the segment's end cuts an episode, and take one policy-gradient step on
(return - baseline) x log-probability, averaged over the learners.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpirl.algos.api import SYNCHRONOUS, Algorithm, Trainer, option
from mpirl.algos.registry import register


@dataclass
class ReinforceOptions:
    """REINFORCE"""

    reinforce_baseline: bool = option(True, "Subtract a learned state-value baseline from the "
                                      "returns.")
    reinforce_entropy: float = option(0.01, "Entropy bonus weight.", bounds="[0, inf)")


class SoftmaxPolicy(nn.Module):
    """Action logits and a state value from two small MLPs."""

    def __init__(self, obs_dim: int, actions: int, hidden: int):
        super().__init__()
        self.pi = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, actions))
        self.baseline = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.reshape(obs.shape[0], -1).float()
        return self.pi(x), self.baseline(x).squeeze(-1)

    @torch.inference_mode()
    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False
            ) -> np.ndarray:
        logits = self.pi(torch.from_numpy(obs).reshape(len(obs), -1).float()).numpy()
        if deterministic:
            return logits.argmax(-1)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        u = rng.random((len(obs), 1))
        return np.minimum((p.cumsum(-1) < u).sum(-1), p.shape[1] - 1)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions


def _policy(cfg, env) -> SoftmaxPolicy:
    return SoftmaxPolicy(int(np.prod(env.obs_shape)), env.n_actions, cfg.hidden_sizes[0])


def _message(cfg, env) -> dict:
    T, N = cfg.n_steps, cfg.envs_per_actor
    return {"obs": ((T + 1, N, *env.obs_shape), np.dtype(np.float32)),
            "actions": ((T, N), np.dtype(np.int64)),
            "rewards": ((T, N), np.dtype(np.float32)),
            "dones": ((T, N), np.dtype(np.float32))}


class SegmentCollector:
    """--n-steps steps of every env with the policy's samples."""

    def __init__(self, ctx):
        self.policy, self.envs, self.rng, self.steps = ctx.policy, ctx.envs, ctx.rng, \
            ctx.cfg.n_steps

    def collect(self, out, progress: float) -> None:
        envs = self.envs
        for t in range(self.steps):
            out["obs"][t] = envs.obs
            actions = self.policy.act(envs.obs, self.rng)
            out["actions"][t] = actions
            _, rewards, terminated, truncated, _ = envs.step(actions)
            out["rewards"][t] = rewards
            out["dones"][t] = terminated | truncated
        out["obs"][self.steps] = envs.obs
        returns, lengths = envs.pop_episodes()
        out["episodes"][:] = (len(returns), sum(returns), sum(lengths))

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "envs": self.envs.state_dict()}

    def load_state_dict(self, state: dict, epoch: int) -> int:
        self.rng.bit_generator.state = state["rng"]
        return self.envs.load_state_dict(state["envs"], epoch)


class ReinforceTrainer(Trainer):
    stat_keys = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")

    def __init__(self, ctx):
        super().__init__(ctx)
        self.cfg, self.policy = ctx.cfg, ctx.policy
        self.averager = ctx.averager(ctx.policy.parameters())
        self.optimizer = torch.optim.Adam(ctx.policy.parameters(), lr=ctx.cfg.lr)
        self.batch: dict[str, np.ndarray] = {}

    def optimizers(self) -> list:
        return [self.optimizer]

    def ingest(self, messages) -> None:
        for key in ("obs", "actions", "rewards", "dones"):
            self.batch[key] = np.concatenate([m[key] for m in messages], axis=1)

    def train(self, progress: float) -> list[dict]:
        cfg, b, dev = self.cfg, self.batch, self.ctx.device
        T, N = b["rewards"].shape
        self.averager.announce()
        obs = torch.from_numpy(b["obs"]).to(dev).reshape((T + 1) * N, -1)
        logits, values = self.policy(obs)
        values = values.reshape(T + 1, N)
        returns = np.empty((T, N), dtype=np.float32)
        running = values[T].detach().cpu().numpy()  # where the segment cuts an episode
        for t in range(T - 1, -1, -1):
            running = b["rewards"][t] + cfg.gamma * (1.0 - b["dones"][t]) * running
            returns[t] = running
        returns_t = torch.from_numpy(returns).to(dev)
        baseline = values[:T] if cfg.reinforce_baseline else torch.zeros_like(returns_t)
        logp_all = torch.log_softmax(logits.reshape(T + 1, N, -1)[:T], dim=-1)
        actions = torch.from_numpy(b["actions"]).to(dev)
        logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
        policy_loss = -((returns_t - baseline.detach()) * logp).mean()
        value_loss = (returns_t - values[:T]).pow(2).mean()
        loss = policy_loss + 0.5 * value_loss - cfg.reinforce_entropy * entropy
        self.averager.zero_grad()
        self.averager.backward(loss)
        self.averager.average()
        grad_norm = self.averager.clip_norm_(cfg.max_grad_norm)
        skipped = not self.averager.finite
        if not skipped:
            self.optimizer.step()
            self.updates += 1
        return [{"skipped": skipped, "loss": float(loss.detach()),
                 "policy_loss": float(policy_loss.detach()),
                 "value_loss": float(value_loss.detach()), "entropy": float(entropy.detach()),
                 "grad_norm": grad_norm}]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, shared, own) -> None:
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])


ALGORITHM = register(Algorithm(
    name="reinforce",
    description="REINFORCE with a learned baseline (a plug-in)",
    execution=SYNCHRONOUS,
    options=(ReinforceOptions,),
    defaults={"n_steps": 50, "envs_per_actor": 4, "optimizer": "adam", "lr": 3e-3,
              "lr_schedule": "constant", "hidden_sizes": [32], "total_steps": 100_000,
              "eval_every": 10_000, "log_every": 5_000},
    policy=_policy,
    collector=SegmentCollector,
    message=_message,
    trainer=ReinforceTrainer,
    actions=("discrete",),  # Box envs are refused with the algorithms that fit
))
