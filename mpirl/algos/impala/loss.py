"""The IMPALA loss and update (Espeholt et al. 2018, arXiv:1802.01561, section 4.2).

``impala_loss`` is a pure function of tensors. ``Impala`` is the update a learner runs on a
batch of unrolls acted with older weights: V-trace targets (``mpirl.algos.returns.vtrace``)
from the learner's values and the behaviour policy's log-probabilities, then the loss,
backward, gradient averaging across learners, clipping and the optimizer step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mpirl.algos.onpolicy import rollout_outputs
from mpirl.algos.returns import vtrace
from mpirl.nets.backprop import ActorCriticPass, categorical, supports


@dataclass
class ImpalaLoss:
    total: torch.Tensor | float
    policy: torch.Tensor | float
    value: torch.Tensor | float
    entropy: torch.Tensor | float


def impala_loss(logp: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor,
                vs: torch.Tensor, pg_advantages: torch.Tensor, vf_coef: float,
                ent_coef: float) -> ImpalaLoss:
    """Policy gradient with the clipped importance-weighted advantages, plus ``vf_coef`` x the
    squared error to the V-trace targets ``vs``, minus ``ent_coef`` x entropy, each a mean over
    the batch. ``vs`` and ``pg_advantages`` are constants. Values of several heads,
    (batch, heads), add their errors."""
    policy = -(pg_advantages.detach() * logp).mean()
    error = (vs.detach() - values).pow(2)
    if error.dim() > 1:  # one column per value head: their errors add up
        error = error.sum(-1)
    value = error.mean()
    ent = entropy.mean()
    return ImpalaLoss(policy + vf_coef * value - ent_coef * ent, policy, value, ent)


class Impala:
    """The IMPALA update over a batch of unrolls (T steps x N env streams)."""

    STAT_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm", "rho_mean",
                 "rho_clipped")

    def __init__(self, cfg, model, averager, optimizer, autograd: bool = False,
                 intrinsic=None):
        """``intrinsic``: an ``mpirl.algos.rnd.RND`` whose predictor the averager also covers
        (and ``optimizer`` steps); the batch then brings ``int_rewards`` and the model two
        value heads, each with its V-trace targets (the intrinsic discount never stops)."""
        self.cfg, self.model = cfg, model
        self.averager, self.optimizer = averager, optimizer
        self.intrinsic = intrinsic
        if intrinsic is not None:
            self.STAT_KEYS = Impala.STAT_KEYS + intrinsic.STAT_KEYS
        self.device = next(model.parameters()).device
        # MLP policies on a CPU: the gradient by hand (``mpirl.nets.backprop``), the same
        # numbers as autograd's at a fraction of the cost; anything else through autograd
        self.by_hand = (ActorCriticPass(model) if not autograd and self.device.type == "cpu"
                        and intrinsic is None and supports(model) else None)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """``batch``: obs (T+1, N, ...), actions (T, N, ...), rewards, dones, bootstrap and the
        behaviour policy's ``logp`` (T, N). Skipped (``skipped``) if any learner's loss or the
        averaged gradient is not finite."""
        cfg, averager = self.cfg, self.averager
        averager.announce()
        T, N = batch["rewards"].shape

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device)

        obs_tn = tensor(batch["obs"])
        obs = obs_tn.reshape(((T + 1) * N,) + tuple(obs_tn.shape[2:]))
        actions = tensor(batch["actions"])
        actions = actions.reshape((T * N,) + tuple(actions.shape[2:]))
        discounts = cfg.gamma * (1.0 - tensor(batch["dones"]))
        rewards = tensor(batch["rewards"]) + tensor(batch["bootstrap"])
        behaviour = tensor(batch["logp"])
        averager.zero_grad()
        if self.by_hand is not None:
            loss, log_rhos = self._gradient_by_hand(obs, actions, behaviour, discounts,
                                                    rewards, T, N)
            averager.check_loss(loss.total)
        else:
            out, values_all = rollout_outputs(self.model, obs_tn, batch)
            logp, entropy = self.model.log_prob_entropy(out[:T * N], actions)
            log_rhos = logp.detach().reshape(T, N) - behaviour
            bars = (cfg.rho_bar, cfg.c_bar, cfg.pg_rho_bar, cfg.gae_lambda)
            if self.intrinsic is None:
                values = values_all.reshape(T + 1, N)
                vs, pg_adv = vtrace(log_rhos, discounts, rewards, values[:T].detach(),
                                    values[T].detach(), *bars)
                values, vs = values[:T].reshape(-1), vs.reshape(-1)
            else:
                values = values_all.reshape(T + 1, N, 2)
                ext, intr = values[..., 0].detach(), values[..., 1].detach()
                vs_ext, pg_ext = vtrace(log_rhos, discounts, rewards, ext[:T], ext[T], *bars)
                vs_int, pg_int = vtrace(log_rhos, torch.full_like(discounts, cfg.int_gamma),
                                        tensor(batch["int_rewards"]), intr[:T], intr[T], *bars)
                pg_adv = cfg.ext_coef * pg_ext + cfg.int_coef * pg_int
                values = values[:T].reshape(T * N, 2)
                vs = torch.stack([vs_ext, vs_int], -1).reshape(T * N, 2)
            loss = impala_loss(logp, entropy, values, vs, pg_adv.reshape(-1), cfg.vf_coef,
                               cfg.ent_coef)
            total = loss.total
            if self.intrinsic is not None:
                rnd_loss = self.intrinsic.loss()
                total = total + rnd_loss
                rnd_loss = float(rnd_loss.detach())
            averager.backward(total)
            loss = ImpalaLoss(*(float(v.detach()) for v in (total, loss.policy,
                                                            loss.value, loss.entropy)))
        averager.average()
        grad_norm = averager.clip_norm_(cfg.max_grad_norm)
        skipped = not averager.finite  # the same verdict on every learner
        if not skipped:
            self.optimizer.step()
            averager.stepped()  # --sync average: every K updates, the weights are averaged
        rhos = log_rhos.exp()
        stats = {"skipped": skipped, "loss": loss.total, "policy_loss": loss.policy,
                 "value_loss": loss.value, "entropy": loss.entropy, "grad_norm": grad_norm,
                 "rho_mean": float(rhos.mean()),
                 "rho_clipped": float((rhos > cfg.rho_bar).float().mean())}
        if self.intrinsic is not None:
            stats["rnd_loss"] = rnd_loss
        return stats

    def _gradient_by_hand(self, obs, actions, behaviour, discounts, rewards, T: int, N: int
                          ) -> tuple[ImpalaLoss, torch.Tensor]:
        """``impala_loss`` and its gradient (scaled by the averager's share) written into the
        policy's ``.grad`` buffers; returns the loss as floats and the log importance
        weights."""
        cfg, model, share = self.cfg, self.model, self.averager.share
        with torch.no_grad():
            x = model._flat(obs)  # normalized as the model does
        out, values = self.by_hand.forward(x)  # over all T+1 steps: the last bootstraps
        m = T * N
        rows = np.arange(m)
        g_out = self.by_hand.pi_grad
        g_out[m:] = 0.0
        if model.spec.discrete:
            index = actions.numpy()
            probs, logp_all, logp, entropy = categorical(out[:m], index)
            ent = float(entropy.mean())
        else:
            log_std = model.log_std.detach().numpy()
            z = (actions.numpy() - out[:m]) / np.exp(log_std)
            logp = (-0.5 * (z * z) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
            ent = float(log_std.sum()) + 0.5 * (1.0 + math.log(2 * math.pi)) * out.shape[1]
        log_rhos = logp.reshape(T, N) - behaviour.numpy()
        values_tn = values.reshape(T + 1, N)
        vs, pg_adv = vtrace(log_rhos, discounts.numpy(), rewards.numpy(), values_tn[:T],
                            values_tn[T], cfg.rho_bar, cfg.c_bar, cfg.pg_rho_bar, cfg.gae_lambda)
        adv, err = pg_adv.reshape(-1), values[:m] - vs.reshape(-1)
        policy = -float((adv * logp).mean())
        value = float((err * err).mean())
        loss = ImpalaLoss(policy + cfg.vf_coef * value - cfg.ent_coef * ent, policy, value, ent)
        g_logp = adv * (-share / m)  # d loss / d log p, per sample
        if model.spec.discrete:
            # d log p / d logits = onehot(action) - probs; the entropy term adds
            # ent_coef p (log p + H) per logit
            np.multiply(probs, -g_logp[:, None], out=g_out[:m])
            g_out[rows, index] += g_logp
            if cfg.ent_coef:
                g_out[:m] += (cfg.ent_coef * share / m) * probs * (logp_all + entropy[:, None])
        else:
            g_z = g_logp[:, None] * z
            np.multiply(g_z, np.exp(-log_std), out=g_out[:m])
            grad = model.log_std.grad.numpy()
            np.add.reduce(g_z * z - g_logp[:, None], 0, out=grad)
            grad -= cfg.ent_coef * share
        g_v = self.by_hand.vf_grad
        g_v[m:] = 0.0
        np.multiply(err, 2.0 * cfg.vf_coef * share / m, out=g_v[:m])
        self.by_hand.backward()
        return loss, torch.from_numpy(log_rhos)
