"""The DQN loss and update: the double-DQN target (van Hasselt et al. 2016, arXiv:1509.06461),
or with --no-double-q the target network's own maximum (Mnih et al. 2015), n-step returns
and a Huber loss, as in Ape-X (Horgan et al. 2018, arXiv:1803.00933), and importance weights
for prioritized replay (Schaul et al. 2016, arXiv:1511.05952).

``double_dqn_targets`` and ``dqn_loss`` are pure functions of tensors. ``DQN`` is the update a
learner runs on each minibatch: loss, backward, gradient averaging across learners, clipping,
optimizer step; plus the target network and its periodic copy.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mpirl.algos.dqn.direct import DirectQ
from mpirl.algos.dqn.qnetwork import QNetwork
from mpirl.replay import Sample

__all__ = ["DQN", "double_dqn_targets", "dqn_loss"]


def double_dqn_targets(next_q_online: torch.Tensor | None, next_q_target: torch.Tensor,
                       returns: torch.Tensor, discounts: torch.Tensor) -> torch.Tensor:
    """y = R + discount x Q_target(s', argmax_a Q_online(s', a)), or with ``next_q_online``
    None y = R + discount x max_a Q_target(s', a). ``discounts`` is gamma**k, 0 where the
    episode terminated inside the n-step window."""
    if next_q_online is None:
        return returns + discounts * next_q_target.amax(-1)
    best = next_q_online.argmax(-1, keepdim=True)
    return returns + discounts * next_q_target.gather(-1, best).squeeze(-1)


def dqn_loss(q: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (importance-weighted) Huber loss between Q(s, a) and the targets; returns the loss
    and the TD errors (targets - Q(s, a), detached) for the new priorities."""
    taken = q.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    targets = targets.detach()
    per_sample = F.smooth_l1_loss(taken, targets, reduction="none")
    loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
    return loss, (targets - taken).detach()


class DQN:
    """Updates ``model`` from replay minibatches; ``target`` is its periodic copy."""

    # q_max and td_abs let a user see divergence coming: overestimated values grow the
    # largest Q and the TD errors long before the returns collapse
    STAT_KEYS = ("loss", "q_mean", "grad_norm", "q_max", "td_abs")

    def __init__(self, cfg, model, target, averager, optimizer):
        self.cfg = cfg
        self.model, self.target = model, target
        self.averager, self.optimizer = averager, optimizer
        self.device = next(model.parameters()).device
        self.double = getattr(cfg, "double_q", True)
        # the MLP Q-network's passes written out (``direct``): half the time of autograd's
        self.direct = DirectQ(model) if type(model) is QNetwork else None
        self.sync_target()

    def sync_target(self) -> None:
        with torch.no_grad():
            for t, p in zip(self.target.parameters(), self.model.parameters()):
                t.copy_(p)

    def step(self, loss: torch.Tensor | None) -> tuple[float, bool]:
        """Backward (``loss`` None: the gradient is already written), average over the
        learners, clip, and step unless the averaged gradient is not finite (the same verdict
        on every learner). Returns (gradient norm, skipped)."""
        if loss is not None:
            self.averager.zero_grad()
            self.averager.backward(loss)
        self.averager.average()
        grad_norm = self.averager.clip_norm_(self.cfg.max_grad_norm)
        skipped = not self.averager.finite
        if not skipped:
            self.optimizer.step()
            self.averager.stepped()
        return grad_norm, skipped

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device, non_blocking=True)

    def _targets(self, batch: Sample, next_online: torch.Tensor | None,
                 cached: np.ndarray | None) -> torch.Tensor:
        """``double_dqn_targets`` of the batch, with Q_target(s', .) ``cached`` where given,
        else from the target network's forward pass."""
        next_q = (self._tensor(cached) if cached is not None
                  else self.target(self._tensor(batch.next_obs)))
        return double_dqn_targets(next_online, next_q, self._tensor(batch.returns),
                                  self._tensor(batch.discounts))

    def update(self, batch: Sample, weighted: bool, next_target_q: np.ndarray | None = None
               ) -> dict:
        """One averaged gradient step on this learner's part of the global minibatch
        (``next_target_q``: the target network's action values of its next observations, if
        known). Returns the statistics, ``skipped`` (the same verdict on every learner) and
        the absolute TD errors (for the priorities)."""
        self.averager.announce()
        obs = self._tensor(batch.obs)
        if self.direct is not None:
            return self._direct_update(batch, weighted, obs, next_target_q)
        with torch.no_grad():
            online = self.model(self._tensor(batch.next_obs)) if self.double else None
            targets = self._targets(batch, online, next_target_q)
        q = self.model(obs)
        loss, td = dqn_loss(q, self._tensor(batch.actions), targets,
                            self._tensor(batch.weights) if weighted else None)
        grad_norm, skipped = self.step(loss)
        return self._stats(loss, q.detach(), td, grad_norm, skipped)

    def _direct_update(self, batch: Sample, weighted: bool, obs: torch.Tensor,
                       next_target_q: np.ndarray | None) -> dict:
        """``update`` through ``DirectQ``: the same loss, its gradient by hand. The Huber
        loss's derivative is its TD error clipped to [-1, 1]."""
        model, n = self.model, len(batch.actions)
        with torch.no_grad():
            # double DQN: the online network over the observations and the next ones at once
            x = (torch.cat([model._flat(obs), model._flat(self._tensor(batch.next_obs))])
                 if self.double else model._flat(obs))
            inputs, q_both = self.direct.forward(x)
            if q_both.device.type == "cpu":
                return self._numpy_head(batch, weighted, inputs, q_both, n, next_target_q)
            q = q_both[:n]
            targets = self._targets(batch, q_both[n:] if self.double else None, next_target_q)
            weights = self._tensor(batch.weights) if weighted else None
            actions = self._tensor(batch.actions)
            loss, td = dqn_loss(q, actions, targets, weights)
            # d loss / d Q(s, a) of this learner's share of the global mean
            slope = td.neg().clamp_(-1.0, 1.0).mul_(self.averager.share / max(n, 1))
            if weights is not None:
                slope.mul_(weights)
            self.averager.zero_grad(gradient=False)
            self.averager.check_loss(loss)
            taken = actions.long().unsqueeze(-1)
            self.direct.backward(inputs, torch.zeros_like(q).scatter_(-1, taken,
                                                                      slope.unsqueeze(-1)))
        grad_norm, skipped = self.step(None)
        return self._stats(loss, q, td, grad_norm, skipped)

    def _numpy_head(self, batch: Sample, weighted: bool, inputs: list[torch.Tensor],
                    q_both: torch.Tensor, n: int, next_target_q: np.ndarray | None) -> dict:
        """The rest of ``_direct_update`` on the CPU: the targets, the Huber loss, its
        derivative and the statistics are a few values per row, for which numpy's cost per
        operation is a fraction of torch's (the same arithmetic as ``dqn_loss``)."""
        both = q_both.numpy()
        q, rows = both[:n], np.arange(n)
        next_q = (next_target_q if next_target_q is not None
                  else self.target(self._tensor(batch.next_obs)).numpy())
        next_values = next_q[rows, both[n:].argmax(-1)] if self.double else next_q.max(-1)
        td = batch.returns + batch.discounts * next_values - q[rows, batch.actions]
        td_abs = np.abs(td)
        per_sample = np.where(td_abs < 1.0, 0.5 * td * td, td_abs - 0.5)
        slope = np.clip(td, -1.0, 1.0)  # d loss / d Q(s, a), of this learner's share
        slope *= -self.averager.share / max(n, 1)
        if weighted:
            per_sample *= batch.weights
            slope *= batch.weights
        loss = float(per_sample.mean())
        dq = np.zeros_like(q)
        dq[rows, batch.actions] = slope
        self.averager.zero_grad(gradient=False)
        self.averager.check_loss(loss)
        self.direct.backward(inputs, torch.from_numpy(dq))
        grad_norm, skipped = self.step(None)
        return {"skipped": skipped, "loss": loss, "q_mean": float(q.mean()),
                "q_max": float(q.max()), "td_abs": float(td_abs.mean()),
                "grad_norm": grad_norm, "td": td_abs}

    @staticmethod
    def _stats(loss: torch.Tensor, q: torch.Tensor, td: torch.Tensor, grad_norm: float,
               skipped: bool) -> dict:
        td = td.abs()
        loss_, q_mean, q_max, td_abs = torch.stack([loss.detach(), q.mean(), q.max(),
                                                   td.mean()]).tolist()  # one transfer
        return {"skipped": skipped, "loss": loss_, "q_mean": q_mean, "q_max": q_max,
                "td_abs": td_abs, "grad_norm": grad_norm, "td": td.cpu().numpy()}
