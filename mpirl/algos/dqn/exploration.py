"""Exploration rates of DQN's acting ranks: each its own epsilon, spread over the fleet as in
Ape-X (Horgan et al. 2018, arXiv:1803.00933)."""
from __future__ import annotations

from typing import Callable

import numpy as np


def actor_epsilon(cfg, progress: float, index: int, count: int) -> float:
    """The exploration rate of acting rank ``index`` of ``count`` at ``progress`` (fraction of
    the budget done): annealed linearly from 1.0 over ``cfg.exploration_fraction``, to
    ``cfg.eps_final`` (linear) or to the Ape-X rate eps_base ** (1 + eps_alpha i / (N - 1)).
    A single acting rank has no fleet to spread rates over: it follows the linear schedule
    (Ape-X would hold it at eps_base, far too high for one policy's data)."""
    if cfg.exploration == "linear" or count == 1:
        final = cfg.eps_final
    else:
        final = cfg.eps_base ** (1.0 + cfg.eps_alpha * index / (count - 1))
    if cfg.exploration_fraction <= 0:
        return final
    frac = min(max(progress, 0.0) / cfg.exploration_fraction, 1.0)
    return 1.0 + frac * (final - 1.0)


class EpsilonGreedy:
    """A Q-network's greedy actions, each replaced with probability epsilon by a uniformly
    random one (``TransitionCollector``'s action choice)."""

    def __init__(self, model, rng: np.random.Generator, n_actions: int,
                 epsilon_at: Callable[[float], float]):
        self.model, self.rng, self.n_actions, self.epsilon_at = model, rng, n_actions, epsilon_at

    def __call__(self, obs: np.ndarray, progress: float) -> np.ndarray:
        a = self.model.act(obs)
        explore = self.rng.random(len(obs)) < self.epsilon_at(progress)
        if explore.any():
            a[explore] = self.rng.integers(0, self.n_actions, int(explore.sum()))
        return a
