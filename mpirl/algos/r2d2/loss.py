"""R2D2's targets and update (Kapturowski et al. 2019, "Recurrent Experience Replay in
Distributed Reinforcement Learning").

``rescale`` and ``unrescale`` are the invertible value rescaling h and its inverse (Pohlen et
al. 2018); ``nstep_returns`` the n-step reward sums and bootstrap points of every step of
stored sequences, episode ends included; ``sequence_priorities`` the mix of the max and mean
absolute TD error. ``R2D2`` is the update a learner runs on a minibatch of sequences: both
networks unrolled from the stored states, the first --burn-in steps without gradient, double-Q
targets on the rest, gradient averaged over the learners.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mpirl.algos.dqn.loss import DQN
from mpirl.replay import ENDED, TERMINATED, VALID

EPS = 1e-3  # h's linear term


def rescale(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def unrescale(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """h^-1(x) = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)."""
    root = (torch.sqrt(1.0 + 4.0 * eps * (x.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(x) * (root * root - 1.0)


def nstep_returns(rewards: torch.Tensor, flags: torch.Tensor, gamma: float, n: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every step t < L - n of sequences of L steps (``rewards``, ``flags`` (B, L), flags
    as the replay writes them): the discounted sum of up to ``n`` rewards, stopping at the
    episode's last step; the discount of the bootstrap value (gamma^n, gamma^(k+1) where the
    episode was cut off by a time limit at step t + k, 0 where it terminated); and the index of
    the step to bootstrap from (t + n, or the row after a cut-off step, which holds the
    episode's final observation). Each (B, L - n)."""
    B, L = rewards.shape
    T = L - n
    dev = rewards.device
    returns = torch.zeros(B, T, device=dev)
    discount = torch.ones(B, T, device=dev)
    open_ = torch.ones(B, T, dtype=torch.bool, device=dev)
    boot_discount = torch.zeros(B, T, device=dev)
    index = torch.arange(T, device=dev).expand(B, T) + n
    flags = flags.long()
    for k in range(n):
        f = flags[:, k:k + T]
        returns += torch.where(open_, discount * rewards[:, k:k + T], 0.0)
        ended = open_ & ((f & ENDED) != 0)
        cut = ended & ((f & TERMINATED) == 0)
        boot_discount = torch.where(cut, discount * gamma, boot_discount)
        index = torch.where(cut, torch.arange(T, device=dev) + k + 1, index)
        open_ = open_ & ~ended
        discount = discount * gamma
    boot_discount = torch.where(open_, discount, boot_discount)
    return returns, boot_discount, index


def sequence_priorities(td: torch.Tensor, mask: torch.Tensor, eta: float) -> torch.Tensor:
    """eta x max |td| + (1 - eta) x mean |td| over each sequence's masked steps (B, T)."""
    a = td.abs() * mask
    count = mask.sum(1).clamp(min=1.0)
    return eta * a.max(1).values + (1.0 - eta) * a.sum(1) / count


def td_targets(rewards, flags, q_boot, gamma: float, n: int, rescaled: bool) -> torch.Tensor:
    """The n-step targets of steps 0 .. L - n - 1: h(R + discount x h^-1(q_boot[index])), with
    ``q_boot`` (B, L) the value to bootstrap from at each step (no h where ``rescaled`` is
    False)."""
    returns, discount, index = nstep_returns(rewards, flags, gamma, n)
    boot = q_boot.gather(1, index)
    if rescaled:
        return rescale(returns + discount * unrescale(boot))
    return returns + discount * boot


class R2D2(DQN):
    """Updates ``model`` from minibatches of stored sequences; ``target`` is its periodic
    copy (DQN's statistics and target copy)."""

    def update(self, batch: dict[str, np.ndarray], weights: np.ndarray | None) -> dict:
        """``batch``: sequences of L = --seq-len + --n-step steps, (B, L, ...) arrays obs,
        actions, rewards, flags, firsts, and ``state`` (B, 2, size) before their first step.
        Returns the statistics and each sequence's new priority (``priorities``)."""
        cfg, model, dev = self.cfg, self.model, self.device

        def tensor(key: str) -> torch.Tensor:
            return torch.from_numpy(batch[key]).to(dev).transpose(0, 1)  # (L, B, ...)

        obs, firsts = tensor("obs"), tensor("firsts")
        state = torch.from_numpy(batch["state"]).to(dev).transpose(0, 1).contiguous()
        burn, n = cfg.burn_in, cfg.n_step
        L = obs.shape[0]
        self.averager.announce()
        with torch.no_grad():
            q_target, _ = self.target.unroll(obs, state, firsts)
            if burn > 0:
                q_burn, state = model.unroll(obs[:burn], state, firsts[:burn])
        q_rest, _ = model.unroll(obs[burn:], state, firsts[burn:])
        with torch.no_grad():  # the online network's greedy actions, over every step
            online = q_rest.detach() if burn == 0 else torch.cat([q_burn, q_rest.detach()])
            best = (online if cfg.double_q else q_target).argmax(-1, keepdim=True)
            q_boot = q_target.gather(-1, best).squeeze(-1).transpose(0, 1)  # (B, L)
            rewards = torch.from_numpy(batch["rewards"]).to(dev)
            flags = torch.from_numpy(batch["flags"]).to(dev)
            targets = td_targets(rewards, flags, q_boot, cfg.gamma, n, cfg.value_rescaling)
            targets = targets[:, burn:]                                    # (B, T)
            mask = ((flags[:, burn:L - n].long() & VALID) != 0).float()
        actions = torch.from_numpy(batch["actions"]).to(dev)[:, burn:L - n].long()
        q_seq = q_rest[:L - n - burn].transpose(0, 1)                       # (B, T, actions)
        taken = q_seq.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        per_step = F.smooth_l1_loss(taken, targets, reduction="none") * mask
        per_sequence = per_step.sum(1) / mask.sum(1).clamp(min=1.0)
        if weights is not None:
            per_sequence = per_sequence * torch.from_numpy(weights).to(dev)
        loss = per_sequence.mean()
        grad_norm, skipped = self.step(loss)
        with torch.no_grad():
            td = (targets - taken.detach()) * mask
            priorities = sequence_priorities(td, mask, cfg.priority_eta)
            kept = taken.detach()[mask > 0]
            stats = torch.stack([loss.detach(), kept.mean() if len(kept) else loss.new_zeros(()),
                                 kept.max() if len(kept) else loss.new_zeros(()),
                                 (td.abs().sum() / mask.sum().clamp(min=1.0))]).tolist()
        return {"skipped": skipped, "loss": stats[0], "q_mean": stats[1], "q_max": stats[2],
                "td_abs": stats[3], "grad_norm": grad_norm,
                "priorities": priorities.cpu().numpy()}
