"""MLP building blocks: orthogonally initialised linear stacks, and the same layers read as
(linear, activation) pairs for code that runs them outside torch (numpy actors, the hand-written
PPO gradient)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mpirl.nets.acting import activate_  # noqa: F401  (re-exported for the torch-side code)


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


def stack_names(layers: nn.Sequential, prefix: str) -> list[tuple[str, str, str | None]]:
    """``linear_stack`` by parameter names (``prefix`` is the stack's name in its module):
    (weight name, bias name, activation after it), as ``mpirl.nets.acting`` reads layers."""
    index = {id(m): name for name, m in layers.named_children()}
    return [(f"{prefix}.{index[id(lin)]}.weight", f"{prefix}.{index[id(lin)]}.bias", act)
            for lin, act in linear_stack(layers)]


def parameter_layout(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of a module's parameters, in the order of ``parameters()``."""
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


class ActsInNumpy:
    """Mixin of a policy module with a numpy twin (``mpirl.nets.acting``): ``acting()`` gives
    it, reading the module's own parameters (re-read when they move, as when
    ``FlatParameters`` gathers them into one vector); ``_make_acting()`` builds it, or returns
    None where the module acts in torch."""

    _acting_twin = None
    _acting_ptrs: list[int] | None = None

    def _make_acting(self):
        return None

    def acting(self):
        if self._acting_twin is None:
            self._acting_twin = self._make_acting()
            if self._acting_twin is None:
                return None
        ptrs = [p.data_ptr() for p in self.parameters()]
        if ptrs != self._acting_ptrs:
            self._acting_twin.bind_arrays([p.detach().numpy() for p in self.parameters()])
            self._acting_ptrs = ptrs
        return self._acting_twin


def sequential(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` without nn.Module call overhead: learners run this on every batch (actors
    run MLP policies in numpy, ``mpirl.nets.acting``)."""
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
