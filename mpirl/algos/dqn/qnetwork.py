"""DQN's network: action values from an MLP, optionally with dueling heads."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mpirl.acting.envs import EnvSpec
from mpirl.nets.acting import QActing
from mpirl.nets.mlp import ActsInNumpy, mlp, parameter_layout, stack_names


class QNetwork(ActsInNumpy, nn.Module):
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

    def _make_acting(self) -> QActing:
        body = stack_names(self.body, "body")
        value = stack_names(self.value_head, "value_head")[0] if self.dueling else None
        return QActing(parameter_layout(self), body, stack_names(self.head, "head")[0], value)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = True) -> np.ndarray:
        """Greedy actions for a batch of observations (exploration is the collector's job),
        in numpy: an actor's handful of rows would mostly pay torch's fixed cost per call."""
        return self.acting().act(obs)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions
