"""MLP building blocks: orthogonally initialised linear stacks, and the same layers read as
(linear, activation) pairs for code that runs them outside torch (numpy actors, the hand-written
PPO gradient)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


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


def linear_stack(layers: nn.Sequential) -> list[tuple[nn.Linear, str | None]]:
    """(linear layer, the name of the activation after it or None)."""
    mods = list(layers)
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            out.append((m, "tanh" if isinstance(nxt, nn.Tanh) else
                        "relu" if isinstance(nxt, nn.ReLU) else None))
    return out


def activate_(x: np.ndarray, act: str | None) -> None:
    """Apply ``linear_stack``'s activation to an array in place."""
    if act == "tanh":
        np.tanh(x, out=x)
    elif act == "relu":
        np.maximum(x, 0.0, out=x)


def sequential(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` without nn.Module call overhead: learners run this on every batch (actors
    run MLP policies in numpy, ``ActorCritic._policy_np``)."""
    for layer in layers:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.Tanh):
            x = torch.tanh(x)
        elif isinstance(layer, nn.ReLU):
            x = F.relu(x)
        else:
            x = layer(x)
    return x
