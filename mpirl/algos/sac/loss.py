"""Soft actor-critic's losses (Haarnoja et al. 2018, arXiv:1801.01290 and arXiv:1812.05905):
a tanh-squashed Gaussian policy, clipped double-Q targets with the entropy term, and the
temperature tuned toward a target entropy. Pure functions of tensors."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def squashed_sample(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(mean + std x noise) and its log-density, by the change of variables
    log p(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2), with
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) (exact, and stable for large |u|).
    Gradients flow through ``mean`` and ``log_std`` (the reparameterisation trick)."""
    u = mean + log_std.exp() * noise
    gaussian = (-0.5 * noise.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
    jacobian = (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), gaussian - jacobian


def soft_q_targets(next_q: torch.Tensor, next_logp: torch.Tensor, alpha: torch.Tensor | float,
                   returns: torch.Tensor, discounts: torch.Tensor) -> torch.Tensor:
    """y = R + discount x (min_k Q_k'(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s').
    ``next_q``: (members, batch) from the target critics; ``discounts``: gamma**n, 0 where
    the episode terminated inside the n-step window."""
    return returns + discounts * (next_q.min(0).values - alpha * next_logp)


def critic_loss(q: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Half the squared error of every critic against the targets, averaged over the batch
    (importance-weighted with prioritized replay) and summed over the critics."""
    per_sample = 0.5 * (q - targets.detach()).pow(2).sum(0)
    return per_sample.mean() if weights is None else (weights * per_sample).mean()


def policy_loss(q_pi: torch.Tensor, logp: torch.Tensor, alpha: torch.Tensor | float
                ) -> torch.Tensor:
    """E[alpha log pi(a|s) - min_k Q_k(s, a)], a ~ pi(.|s) reparameterised; ``q_pi`` from
    critics whose weights take no gradient."""
    return (alpha * logp - q_pi.min(0).values).mean()


def temperature_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float
                     ) -> torch.Tensor:
    """-E[log alpha x (log pi(a|s) + target entropy)]: raises alpha while the policy's entropy
    is below the target, lowers it above."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()
