"""Advantage and return estimates over a rollout of shape (T, N) (time, envs)."""
from __future__ import annotations

import numpy as np


def gae(rewards: np.ndarray, values: np.ndarray, last_values: np.ndarray, dones: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    ``dones[t]`` is 1 where the episode ended after step t (no bootstrap across it; a truncated
    episode's bootstrap value is already folded into its last reward). ``last_values`` are the
    values of the observations after the final step. With ``lam == 1`` the advantages are plain
    n-step returns minus values. Returns float32 (advantages, returns), both (T, N).
    """
    T = rewards.shape[0]
    adv = np.zeros(rewards.shape, dtype=np.float32)
    next_adv = np.zeros(last_values.shape, dtype=np.float32)
    next_value = last_values
    not_done = 1.0 - dones
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_value - values[t]
        next_adv = delta + gamma * lam * not_done[t] * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values
