"""Exploration rates of DQN's acting ranks: each its own epsilon, spread over the fleet as in
Ape-X (Horgan et al. 2018, arXiv:1803.00933)."""
from __future__ import annotations


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
