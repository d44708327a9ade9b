"""Proximal policy optimization with the clipped objective (Schulman et al. 2017,
arXiv:1707.06347), GAE advantages, several epochs of minibatches per rollout batch.

``ppo_loss`` is a pure function of tensors. ``PPO`` is the update a learner runs on its part of
each batch: every minibatch gradient is averaged over the learners (the ``averager``), so all
learners take identical steps. What must be global rides in collectives the caller provides:
advantage statistics through ``merge`` (moments of every learner's advantages), the
approximate KL in a slot of the gradient allreduce, so that every learner stops its epochs at
the same minibatch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mpirl.runtime import timing
from mpirl.algos.returns import gae
from mpirl.algos.moments import Moments


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
    (the prediction kept within ``clip_vf`` of ``old_values``)."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)
    policy = -surrogate.mean()
    error = (returns - values).pow(2)
    if clip_vf is not None:
        clipped = old_values + (values - old_values).clamp(-clip_vf, clip_vf)
        error = torch.max(error, (returns - clipped).pow(2))
    value = error.mean()
    ent = entropy.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return PPOLoss(policy + vf_coef * value - ent_coef * ent, policy, value, ent, approx_kl,
                   clip_fraction)


KL_SLOT = 2  # the averager's extras: [stop requested, checkpoint due, share x approx KL]


class PPO:
    """The PPO update over one batch of rollouts (T steps x N envs) in ``minibatches`` parts
    per epoch; every learner must use the same ``minibatches``."""

    STAT_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                 "grad_norm")

    def __init__(self, cfg, model, averager, optimizer, minibatches: int,
                 merge: Callable[[Moments], Moments] | None = None):
        self.cfg, self.model, self.averager, self.optimizer = cfg, model, averager, optimizer
        self.minibatches = minibatches
        self.merge = merge or (lambda m: m)
        self.device = next(model.parameters()).device
        self.kl_stops = 0  # iterations whose epochs the target KL cut short
        # MLP policies on a CPU: the loss gradient by hand (same numbers, a fraction of the
        # per-operation cost); anything else through autograd
        from mpirl.algos import mlp_backprop
        self.by_hand = (mlp_backprop.MLPLossGrad(model)
                        if self.device.type == "cpu" and mlp_backprop.supports(model) else None)

    def _advantages(self, batch: dict[str, np.ndarray], values: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        T = batch["rewards"].shape[0]
        rewards = batch["rewards"] + batch["bootstrap"]
        adv, ret = gae(rewards, values[:T], values[T], batch["dones"], cfg.gamma, cfg.gae_lambda)
        adv, ret = adv.reshape(-1), ret.reshape(-1)
        if cfg.normalize_advantage:
            m = self.merge(Moments.of(adv))  # the global batch's mean and std
            adv = ((adv - m.mean) / (np.sqrt(m.var) + 1e-8)).astype(np.float32)
        return adv, ret

    def update(self, batch: dict[str, np.ndarray], clip: float, control: list[float],
               rng: np.random.Generator) -> tuple[list[dict], list[float]]:
        """``batch``: obs (T+1, N, ...), actions (T, N, ...), rewards, dones, bootstrap (T, N).
        ``control``: this learner's values for the shared control slots; returns the stats of
        each minibatch step and the control slots summed over the learners."""
        cfg, model, averager, dev = self.cfg, self.model, self.averager, self.device
        T, N = batch["rewards"].shape
        n = T * N
        obs_all = torch.from_numpy(batch["obs"]).to(dev)
        obs_all = obs_all.reshape(((T + 1) * N,) + tuple(obs_all.shape[2:]))
        actions = torch.from_numpy(batch["actions"]).to(dev)
        actions = actions.reshape((n,) + tuple(actions.shape[2:]))
        with torch.no_grad():
            out, values_all = model(obs_all)
            old_logp, _ = model.log_prob_entropy(out[:n], actions)
        values = values_all.cpu().numpy().reshape(T + 1, N)
        adv, ret = self._advantages(batch, values)
        obs = obs_all[:n]
        old_values = values_all[:n]
        if self.by_hand is not None:  # normalized once: the statistics hold for the batch
            with torch.no_grad():
                x = model._flat(obs)
        adv_t = torch.from_numpy(adv).to(dev)
        ret_t = torch.from_numpy(ret).to(dev)
        extras = averager.extras
        host_extras = extras.numpy() if extras.device.type == "cpu" else None
        own = None if host_extras is not None else torch.tensor(control, dtype=extras.dtype)
        bounds = np.linspace(0, n, self.minibatches + 1).astype(np.int64)
        stats: list[dict] = []
        sums = list(control)
        for _ in range(cfg.n_epochs):
            order = torch.from_numpy(rng.permutation(n)).to(dev) if self.minibatches > 1 else None
            for k in range(self.minibatches):
                if order is None:
                    part = slice(None)
                else:
                    part = order[bounds[k]:bounds[k + 1]]
                timing.switch("gradient")
                averager.announce()
                if self.by_hand is not None:
                    averager.zero_grad()
                    loss = self.by_hand(x[part], actions[part], old_logp[part], adv_t[part],
                                        old_values[part], ret_t[part], clip, cfg.clip_range_vf,
                                        cfg.vf_coef, cfg.ent_coef, averager.share)
                    averager.check_loss(loss.total)
                    scalars = [loss.total, loss.policy, loss.value, loss.entropy,
                               loss.approx_kl, loss.clip_fraction]
                else:
                    out_b, v_b = model(obs[part])
                    logp, entropy = model.log_prob_entropy(out_b, actions[part])
                    loss = ppo_loss(logp, old_logp[part], adv_t[part], v_b, old_values[part],
                                    ret_t[part], entropy, clip, cfg.clip_range_vf, cfg.vf_coef,
                                    cfg.ent_coef)
                    averager.zero_grad()
                    averager.backward(loss.total)
                    scalars = torch.stack([loss.total.detach(), loss.policy.detach(),
                                           loss.value.detach(), loss.entropy.detach(),
                                           loss.approx_kl, loss.clip_fraction]).tolist()
                total, policy, value, ent, approx_kl, clip_fraction = scalars
                if host_extras is not None:
                    host_extras[:KL_SLOT] = control  # summed afresh by every allreduce
                    host_extras[KL_SLOT] = approx_kl * averager.share
                else:
                    extras[:KL_SLOT].copy_(own)
                    extras[KL_SLOT] = approx_kl * averager.share
                averager.average()
                summed = extras.tolist()
                sums = summed[:KL_SLOT]
                if cfg.target_kl is not None and summed[KL_SLOT] > 1.5 * cfg.target_kl:
                    self.kl_stops += 1  # the same verdict on every learner
                    return stats, sums
                grad_norm = averager.clip_norm_(cfg.max_grad_norm)
                skipped = not averager.finite
                stats.append({"skipped": skipped, "loss": total, "policy_loss": policy,
                              "value_loss": value, "entropy": ent,
                              "approx_kl": summed[KL_SLOT], "clip_fraction": clip_fraction,
                              "grad_norm": grad_norm})
                if skipped:
                    if cfg.nonfinite == "stop":
                        return stats, sums
                    continue
                self.optimizer.step()
        timing.switch("other")
        return stats, sums
