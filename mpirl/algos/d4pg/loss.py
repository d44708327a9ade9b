"""D4PG's losses (Barth-Maron et al. 2018, arXiv:1804.08617): a categorical distributional
critic (Bellemare et al. 2017, arXiv:1707.06887) trained on n-step returns projected onto its
fixed support, and a deterministic policy trained on the critic's mean. Pure functions of
tensors."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def categorical_projection(probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """The distribution of R + discount x Z, with Z on ``support`` (K evenly spaced atoms
    from v_min to v_max) with ``probs`` (batch, K), projected back onto ``support``: each
    shifted atom, clipped to [v_min, v_max], splits its mass between the two atoms around
    it in proportion to its closeness (all of it to an atom it lands on)."""
    k = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (k - 1)
    shifted = (returns.unsqueeze(-1) + discounts.unsqueeze(-1) * support).clamp(v_min, v_max)
    b = ((shifted - v_min) / delta).clamp(0, k - 1)
    lower, upper = b.floor(), b.ceil()
    to_lower = probs * (upper - b)
    to_upper = probs * (b - lower)
    to_lower = torch.where(upper == lower, probs, to_lower)  # landed on an atom
    out = torch.zeros_like(probs)
    out.scatter_add_(-1, lower.long(), to_lower)
    out.scatter_add_(-1, upper.long(), to_upper)
    return out


def distributional_critic_loss(logits: torch.Tensor, target_probs: torch.Tensor,
                               weights: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the critic's distribution (``logits``, (batch, K)) against the
    projected targets; the (importance-weighted) mean and each sample's value (D4PG's
    priorities)."""
    per_sample = -(target_probs.detach() * F.log_softmax(logits, dim=-1)).sum(-1)
    loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
    return loss, per_sample.detach()


def policy_loss(logits_pi: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """-E[mean of Z(s, pi(s))] from critic logits whose weights take no gradient."""
    return -(F.softmax(logits_pi, dim=-1) * support).sum(-1).mean()
