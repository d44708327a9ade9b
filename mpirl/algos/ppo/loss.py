"""The clipped PPO objective (Schulman et al. 2017, arXiv:1707.06347) as a pure function of
tensors."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PPOLoss:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor      # mean of (ratio - 1) - log ratio, no gradient
    clip_fraction: torch.Tensor  # share of samples whose ratio left [1 - clip, 1 + clip]


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
             values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
             entropy: torch.Tensor, clip: float, clip_vf: float | None, vf_coef: float,
             ent_coef: float) -> PPOLoss:
    """Clipped surrogate + ``vf_coef`` x value error - ``ent_coef`` x entropy, means over the
    batch. With ``clip_vf`` the value error is the larger of the plain and the clipped one
    (the prediction kept within ``clip_vf`` of ``old_values``). Values of several heads,
    (batch, heads), add their errors."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    policy = -surrogate.mean()
    error = (returns - values).pow(2)
    if clip_vf is not None:
        clipped = old_values + (values - old_values).clamp(-clip_vf, clip_vf)
        error = torch.max(error, (returns - clipped).pow(2))
    if error.dim() > 1:  # one column per value head: their errors add up
        error = error.sum(-1)
    value = error.mean()
    ent = entropy.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return PPOLoss(policy + vf_coef * value - ent_coef * ent, policy, value, ent, approx_kl,
                   clip_fraction)
