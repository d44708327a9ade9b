"""Models: an MLP actor-critic for Box observations, with a Categorical head for Discrete
actions and a Gaussian head (state-independent log-std) for Box actions; and an MLP Q-network
(optionally dueling) for DQN."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mpirl.envs import EnvSpec

_LOG_2PI = math.log(2 * math.pi)


def mlp(sizes: list[int], activation: type[nn.Module], out_gain: float) -> nn.Sequential:
    """Linear layers with orthogonal init (gain sqrt(2) hidden, ``out_gain`` last), zero bias."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(lin.weight, gain=out_gain if last else math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate policy and value MLPs over the flattened observation."""

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "tanh"):
        super().__init__()
        self.spec = spec
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        obs_dim = int(np.prod(spec.obs_shape))
        self.pi = mlp([obs_dim, *hidden_sizes, spec.n_actions], act, out_gain=0.01)
        self.vf = mlp([obs_dim, *hidden_sizes, 1], act, out_gain=1.0)
        if not spec.discrete:
            self.log_std = nn.Parameter(torch.zeros(spec.n_actions))

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy output (logits, or Gaussian means) and state values, for a batch."""
        x = self._flat(obs)
        return self.pi(x), self.vf(x).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.vf(self._flat(obs)).squeeze(-1)

    def log_prob_entropy(self, out: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of ``actions`` and the entropy, per sample."""
        if self.spec.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return logp, entropy
        log_std = self.log_std.expand_as(out)
        z = (actions - out) / log_std.exp()
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
        entropy = (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)
        return logp, entropy

    def _policy_out(self, x: torch.Tensor) -> torch.Tensor:
        """``self.pi(x)`` without nn.Module call overhead (the actor's per-step hot path)."""
        for layer in self.pi:
            if isinstance(layer, nn.Linear):
                x = F.linear(x, layer.weight, layer.bias)
            else:
                x = layer(x)
        return x

    @torch.inference_mode()
    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False
            ) -> np.ndarray:
        """Actions for a batch of observations: sampled with ``rng``, or the mode."""
        out = self._policy_out(self._flat(torch.from_numpy(obs))).numpy()
        if self.spec.discrete:
            if deterministic:
                return out.argmax(-1)
            p = np.exp(out - out.max(-1, keepdims=True))
            cdf = np.cumsum(p, -1)
            u = rng.random((out.shape[0], 1)) * cdf[:, -1:]
            return np.minimum((cdf < u).sum(-1), out.shape[-1] - 1)
        if deterministic:
            return out.astype(np.float32)
        std = np.exp(self.log_std.detach().numpy())
        return (out + std * rng.standard_normal(out.shape)).astype(np.float32)

    @torch.inference_mode()
    def predict_values(self, obs: np.ndarray) -> np.ndarray:
        return self.value(torch.from_numpy(obs)).numpy()


class QNetwork(nn.Module):
    """Action values Q(s, .) from an MLP over the flattened observation. With ``dueling``
    (Wang et al. 2016, arXiv:1511.06581) the last hidden layer feeds a state-value head and an
    advantage head, combined as V + A - mean(A)."""

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "relu",
                 dueling: bool = False):
        super().__init__()
        if not spec.discrete:
            raise ValueError("a Q-network needs a Discrete action space")
        self.spec = spec
        self.dueling = dueling
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        obs_dim = int(np.prod(spec.obs_shape))
        sizes = [obs_dim, *hidden_sizes]
        self.body = mlp(sizes, act, out_gain=math.sqrt(2))
        self.body.append(act())
        self.head = mlp([sizes[-1], spec.n_actions], act, out_gain=1.0)
        if dueling:
            self.value_head = mlp([sizes[-1], 1], act, out_gain=1.0)
        self._layers = [m for m in self.body if isinstance(m, nn.Linear)]
        self._act = F.relu if activation == "relu" else torch.tanh

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values, shape (batch, actions). Written with functional calls: the learner runs
        this tens of times per update cycle, and module-call overhead adds up."""
        x = self._flat(obs)
        for layer in self._layers:
            x = self._act(F.linear(x, layer.weight, layer.bias))
        q = F.linear(x, self.head[0].weight, self.head[0].bias)
        if self.dueling:
            v = F.linear(x, self.value_head[0].weight, self.value_head[0].bias)
            q = v + q - q.mean(-1, keepdim=True)
        return q

    @torch.inference_mode()
    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = True) -> np.ndarray:
        """Greedy actions for a batch of observations (exploration is the collector's job)."""
        return self.forward(torch.from_numpy(obs)).argmax(-1).numpy()


def build_policy(cfg, spec: EnvSpec) -> nn.Module:
    """The model a run with config ``cfg`` trains, for an env described by ``spec``."""
    if cfg.algo == "dqn":
        return QNetwork(spec, list(cfg.hidden_sizes), cfg.activation, cfg.dueling)
    return ActorCritic(spec, list(cfg.hidden_sizes), cfg.activation)


def env_actions(spec: EnvSpec, actions: np.ndarray) -> np.ndarray:
    """What the env receives: Gaussian actions clipped to the action bounds."""
    if spec.discrete:
        return actions
    return np.clip(actions, spec.action_low, spec.action_high).reshape(actions.shape)
