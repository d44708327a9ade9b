"""The two networks of random network distillation (Burda et al. 2018, arXiv:1810.12894): a
fixed, randomly initialised target and a predictor trained to match it. The predictor's error
on an observation is its novelty.

Both take observations already normalized (``mpirl.algos.rnd``). For image stacks they see the
newest frame only, through the paper's convolutions (32 8x8/4, 64 4x4/2, 64 3x3/1, leaky ReLU)
and 512 features, the predictor with two more hidden layers; for other observations, MLPs of
``RND_HIDDEN`` units with ``RND_FEATURES`` outputs, the predictor one layer deeper.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mpirl.acting.envs import EnvSpec
from mpirl.acting.envs import is_image
from mpirl.algos.rnd import rnd_input_shape
from mpirl.nets.mlp import mlp, sequential

RND_HIDDEN = 64
RND_FEATURES = 64
CNN_FEATURES = 512


def _conv_trunk(channels: int, height: int, width: int) -> tuple[nn.Sequential, int]:
    convs = [nn.Conv2d(channels, 32, 8, 4), nn.Conv2d(32, 64, 4, 2), nn.Conv2d(64, 64, 3, 1)]
    for conv in convs:
        nn.init.orthogonal_(conv.weight, gain=math.sqrt(2))
        nn.init.zeros_(conv.bias)
    layers = [convs[0], nn.LeakyReLU(), convs[1], nn.LeakyReLU(), convs[2], nn.LeakyReLU(),
              nn.Flatten()]
    with torch.no_grad():
        flat = nn.Sequential(*convs)(torch.zeros(1, channels, height, width)).numel()
    return nn.Sequential(*layers), flat


def _default_mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RNDNetworks(nn.Module):
    """``target`` (never trained) and ``predictor``; ``error(x)`` is the predictor's mean
    squared error per sample, over the features."""

    def __init__(self, spec: EnvSpec):
        super().__init__()
        shape = rnd_input_shape(spec)
        if is_image(spec):
            trunk, flat = _conv_trunk(*shape)
            self.target = nn.Sequential(trunk, mlp([flat, CNN_FEATURES], nn.ReLU, 1.0))
            trunk, flat = _conv_trunk(*shape)
            self.predictor = nn.Sequential(
                trunk, mlp([flat, CNN_FEATURES, CNN_FEATURES, CNN_FEATURES], nn.ReLU, 1.0))
        else:
            # torch's default initialisation, random biases included: with zero biases a ReLU
            # network is positively homogeneous (f(a x) = a f(x)), and on a few input dimensions
            # its features would tell states apart by their direction alone
            n = int(np.prod(shape))
            self.target = _default_mlp([n, RND_HIDDEN, RND_HIDDEN, RND_FEATURES])
            self.predictor = _default_mlp([n, RND_HIDDEN, RND_HIDDEN, RND_HIDDEN, RND_FEATURES])
        self.image = is_image(spec)
        for p in self.target.parameters():
            p.requires_grad_(False)

    def _run(self, layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        return layers(x) if self.image else sequential(layers, x.reshape(x.shape[0], -1))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the features of (predictor(x) - target(x))^2, per sample; gradients reach
        the predictor only."""
        with torch.no_grad():
            target = self._run(self.target, x)
        return (self._run(self.predictor, x) - target).pow(2).mean(-1)
