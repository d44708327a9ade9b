"""Advantage and return estimates over a rollout of shape (T, N) (time, envs)."""
from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, last_values: torch.Tensor,
        dones: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    ``dones[t]`` is 1 where the episode ended after step t (no bootstrap across it; a truncated
    episode's bootstrap value is already folded into its last reward). ``last_values`` are the
    values of the observations after the final step. With ``lam == 1`` the advantages are plain
    n-step returns minus values. Returns (advantages, returns), both (T, N).
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_values)
    next_value = last_values
    not_done = 1.0 - dones
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_value - values[t]
        next_adv = delta + gamma * lam * not_done[t] * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values
