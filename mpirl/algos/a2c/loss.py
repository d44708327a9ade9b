"""The A2C loss and update (Mnih et al. 2016, arXiv:1602.01783).

``a2c_loss`` is a pure function of tensors. ``A2C`` is the update rule a learner runs on each
batch: loss, backward, gradient averaging across learners, clipping, optimizer step; and the
gradient alone, which A3C workers send to their parameter servers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mpirl.algos.onpolicy import rollout_outputs
from mpirl.algos.returns import gae, valid_steps


@dataclass
class A2CLoss:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def a2c_loss(logp: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor,
             advantages: torch.Tensor, returns: torch.Tensor,
             vf_coef: float, ent_coef: float) -> A2CLoss:
    """Policy-gradient loss plus ``vf_coef`` x value MSE minus ``ent_coef`` x entropy, each a
    mean over the batch. ``advantages`` and ``returns`` are treated as constants."""
    policy = -(advantages.detach() * logp).mean()
    value = (returns.detach() - values).pow(2).mean()
    ent = entropy.mean()
    return A2CLoss(policy + vf_coef * value - ent_coef * ent, policy, value, ent)


class A2C:
    """The A2C update over a batch of rollouts (T steps x N envs)."""

    STAT_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")

    def __init__(self, cfg, model, averager, optimizer):
        self.cfg = cfg
        self.model = model
        self.averager = averager
        self.optimizer = optimizer

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """``batch``: obs (T+1, N, ...), actions (T, N, ...), rewards, dones and bootstrap (T, N),
        and ``lengths`` (N,) where rollouts were cut short: column j then holds its first
        ``lengths[j]`` steps, bootstrapped from the observation after them.
        The step is skipped (``skipped`` in the result) if any learner's loss or the averaged
        gradient is not finite."""
        stats = self.gradient(batch)
        if not stats["skipped"]:
            self.optimizer.step()
            self.averager.stepped()
        return stats

    def gradient(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """The averaged, clipped gradient of the A2C loss on ``batch``, left in the averager's
        flat buffer (no optimizer step: A3C workers send it to their parameter servers)."""
        cfg, model = self.cfg, self.model
        self.averager.announce()
        device = next(model.parameters()).device
        obs = torch.from_numpy(batch["obs"]).to(device)
        T, N = batch["rewards"].shape
        out, values_all = rollout_outputs(model, obs, batch)
        v = values_all.detach().cpu().numpy().reshape(T + 1, N)
        rewards = batch["rewards"] + batch["bootstrap"]
        lengths = batch.get("lengths")  # rollouts cut short (--straggler-cutoff)
        adv, ret = gae(rewards, v[:T], v[T], batch["dones"], cfg.gamma, cfg.gae_lambda,
                       lengths)
        out = out.reshape(T + 1, N, -1)[:T].reshape(T * N, -1)
        actions = torch.from_numpy(batch["actions"]).to(device)
        actions = actions.reshape((T * N,) + actions.shape[2:])
        values = values_all.reshape(T + 1, N)[:T].reshape(-1)
        adv_t = torch.from_numpy(adv).to(device).reshape(-1)
        ret_t = torch.from_numpy(ret).to(device).reshape(-1)
        if lengths is not None:  # the means run over the steps collected
            kept = torch.from_numpy(np.flatnonzero(valid_steps(lengths, T))).to(device)
            out, actions, values = out[kept], actions[kept], values[kept]
            adv_t, ret_t = adv_t[kept], ret_t[kept]
        logp, entropy = model.log_prob_entropy(out, actions)
        loss = a2c_loss(logp, entropy, values, adv_t, ret_t, cfg.vf_coef, cfg.ent_coef)
        self.averager.zero_grad()
        self.averager.backward(loss.total)
        self.averager.average()
        grad_norm = self.averager.clip_norm_(cfg.max_grad_norm)
        skipped = not self.averager.finite  # the same verdict on every learner
        return {"skipped": skipped, "loss": float(loss.total.detach()),
                "policy_loss": float(loss.policy.detach()),
                "value_loss": float(loss.value.detach()), "entropy": float(loss.entropy.detach()),
                "grad_norm": grad_norm}
