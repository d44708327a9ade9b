"""TD3's losses (Fujimoto et al. 2018, arXiv:1802.09477): clipped double-Q targets from a
target policy with smoothing noise, and a deterministic policy trained on the first critic.
Pure functions of tensors."""
from __future__ import annotations

import torch


def smoothed_target_actions(next_actions: torch.Tensor, noise: torch.Tensor, noise_std: float,
                            noise_clip: float) -> torch.Tensor:
    """The target policy's actions plus clipped Gaussian noise (``noise`` standard normal),
    kept in [-1, 1]: target policy smoothing."""
    return (next_actions + (noise * noise_std).clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td3_targets(next_q: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor
                ) -> torch.Tensor:
    """y = R + discount x min_k Q_k'(s', a'); ``next_q`` (members, batch)."""
    return returns + discounts * next_q.min(0).values


def critic_loss(q: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
                ) -> torch.Tensor:
    """The squared error of every critic against the targets, averaged over the batch
    (importance-weighted with prioritized replay) and summed over the critics."""
    per_sample = (q - targets.detach()).pow(2).sum(0)
    return per_sample.mean() if weights is None else (weights * per_sample).mean()


def policy_loss(q_pi: torch.Tensor) -> torch.Tensor:
    """-E[Q_1(s, pi(s))], from critics whose weights take no gradient; ``q_pi``
    (members, batch)."""
    return -q_pi[0].mean()
