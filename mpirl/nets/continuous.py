"""Networks of the off-policy continuous-control algorithms (SAC, TD3, D4PG).

Actions live in [-1, 1]^A inside the algorithms (replay, critics, noise); ``to_env`` scales
them into the env's bounds. Layers start as torch's ``nn.Linear`` does (uniform in
+-1/sqrt(fan in)), as in the reference implementations of these algorithms.

- ``ContinuousPolicy``: an MLP from the observation to a tanh-squashed action. Stochastic
  (SAC): a Gaussian whose mean and log standard deviation the MLP outputs, sampled and then
  squashed; deterministic (TD3, D4PG): tanh of the output.
- ``Critics``: ``members`` MLPs over (observation, action), each with ``outputs`` outputs (1 for
  a Q-value, the atoms of a distributional critic), stored as stacked weights so that all
  members run as one batched matrix product per layer.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mpirl.acting.envs import EnvSpec
from mpirl.nets.acting import LOG_STD_MAX, LOG_STD_MIN, SquashedActing
from mpirl.nets.mlp import ActsInNumpy, parameter_layout, sequential, stack_names


def _activation(name: str) -> type[nn.Module]:
    return {"tanh": nn.Tanh, "relu": nn.ReLU}[name]


def _plain_mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ContinuousPolicy(ActsInNumpy, nn.Module):
    """obs -> action in [-1, 1]^A. ``stochastic``: the last layer gives a mean and a log
    standard deviation per action dimension (``split``)."""

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "relu",
                 stochastic: bool = False):
        super().__init__()
        if spec.discrete:
            raise ValueError("a continuous policy needs a Box action space")
        self.spec, self.stochastic = spec, stochastic
        self.n_actions = spec.n_actions
        obs_dim = int(np.prod(spec.obs_shape))
        out = self.n_actions * (2 if stochastic else 1)
        self.pi = _plain_mlp([obs_dim, *hidden_sizes, out], _activation(activation))

    # ------------------------------------------------------------------ learners (torch)
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The MLP's output: pre-tanh actions (deterministic), or means and log standard
        deviations side by side (stochastic)."""
        return sequential(self.pi, obs.reshape(obs.shape[0], -1).float())

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (clamped) log standard deviation of a stochastic policy's output."""
        mean, log_std = out.split(self.n_actions, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    # ------------------------------------------------------------------ actors (numpy)
    def _make_acting(self) -> SquashedActing:
        return SquashedActing(parameter_layout(self), self.spec, stack_names(self.pi, "pi"),
                              self.stochastic)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Actions in [-1, 1]^A: a squashed Gaussian sample drawn with ``rng`` (stochastic,
        unless ``deterministic``), or tanh of the output."""
        return self.acting().act(obs, rng, deterministic)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1]^A scaled into the env's bounds."""
        return self.acting().to_env(actions)


class Critics(nn.Module):
    """``members`` critics over (observation, action in [-1, 1]^A), each an MLP with
    ``outputs`` outputs. Layer ``i`` of every member is one slice of ``weights[i]``
    (members, fan in, fan out) and ``biases[i]`` (members, 1, fan out)."""

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "relu",
                 members: int = 2, outputs: int = 1):
        super().__init__()
        self.members, self.outputs = members, outputs
        sizes = [int(np.prod(spec.obs_shape)) + spec.n_actions, *hidden_sizes, outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation
            self.weights.append(nn.Parameter(
                torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(
                torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self._act = F.relu if activation == "relu" else torch.tanh

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, frozen: bool = False,
                members: int | None = None) -> torch.Tensor:
        """The outputs of every member (or of the first ``members``), (members, batch,
        outputs). ``frozen``: no gradient flows into the critics' weights (only into
        ``actions``), as a policy loss needs."""
        k = self.members if members is None else members
        x = torch.cat([obs.reshape(obs.shape[0], -1).float(), actions], dim=-1)
        h = x.unsqueeze(0).expand(k, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if k != self.members:
                w, b = w[:k], b[:k]
            if frozen:
                w, b = w.detach(), b.detach()
            if w.shape[-1] == 1:  # one output: a batched product with one column runs
                # 4-5x slower than the products and sums it stands for
                h = torch.sum(h * w.transpose(1, 2), -1, keepdim=True) + b
            else:
                h = torch.baddbmm(b, h, w)
            if i < last:
                h = self._act(h)
        return h
