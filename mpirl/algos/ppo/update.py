"""The PPO update a learner runs on its part of each batch: GAE advantages, then several epochs
of minibatch steps with the clipped objective (``mpirl.algos.ppo.loss``).

Every minibatch gradient is averaged over the learners (the ``averager``), so all learners take
identical steps. What must be global rides in collectives the caller provides: advantage
statistics through ``merge`` (moments of every learner's advantages), and the approximate KL
in the averager's ``approx_kl`` slot, so that every learner stops its epochs at the same
minibatch.

For MLP policies on a CPU the loss gradient is computed with the backward pass written out
(``mpirl.algos.ppo.mlp_backprop``: the same numbers as autograd's, at a fraction of the
per-operation cost); ``autograd=True`` (``--autograd``) uses torch's autograd instead.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mpirl.algos.moments import Moments
from mpirl.algos.onpolicy import rollout_outputs
from mpirl.algos.ppo import mlp_backprop
from mpirl.algos.ppo.loss import ppo_loss
from mpirl.algos.returns import gae, valid_steps
from mpirl.nets.acting import is_recurrent
from mpirl.runtime import timing


class Sequences:
    """A recurrent policy's minibatches: some env columns of the batch, every step of each,
    run through the core from the state their rollout started with."""

    def __init__(self, model, obs: torch.Tensor, batch: dict[str, np.ndarray]):
        self.model, self.obs = model, obs
        dev = obs.device
        self.state = torch.from_numpy(batch["state"]).to(dev)
        self.resets = torch.from_numpy(batch["resets"]).to(dev)
        self.T, self.N = self.resets.shape
        self.step_index = torch.arange(self.T, device=dev).unsqueeze(1) * self.N

    def steps(self, columns: np.ndarray) -> torch.Tensor:
        """The flat (step, env) indices of ``columns``' steps, in the order ``outputs`` gives
        them: step-major."""
        cols = torch.from_numpy(columns).to(self.obs.device)
        return (self.step_index + cols.unsqueeze(0)).reshape(-1)

    def outputs(self, columns: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy outputs and values of ``columns``' T steps (with gradient)."""
        cols = torch.from_numpy(columns).to(self.obs.device)
        out, values = self.model.unroll(self.obs[:, cols], self.state[:, cols],
                                        self.resets[:, cols])
        m = self.T * len(columns)
        return out[:m], values[:m]


class PPO:
    """The PPO update over one batch of rollouts (T steps x N envs) in ``minibatches`` parts
    per epoch; every learner must use the same ``minibatches``."""

    STAT_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                 "grad_norm")

    def __init__(self, cfg, model, averager, optimizer, minibatches: int,
                 merge: Callable[[Moments], Moments] | None = None, autograd: bool = False,
                 intrinsic=None):
        """``averager`` must have an extra slot named ``approx_kl``. ``intrinsic``: an
        ``mpirl.algos.rnd.RND`` whose predictor the averager also covers (and ``optimizer``
        steps); the batch then brings ``int_rewards`` and the model two value heads."""
        self.cfg, self.model, self.averager, self.optimizer = cfg, model, averager, optimizer
        self.intrinsic = intrinsic
        if intrinsic is not None:
            self.STAT_KEYS = PPO.STAT_KEYS + intrinsic.STAT_KEYS
        self.minibatches = minibatches
        self.merge = merge or (lambda m: m)
        self.device = next(model.parameters()).device
        self.kl_stops = 0  # iterations whose epochs the target KL cut short
        self.kl_slot = averager.slots["approx_kl"]
        # MLP policies on a CPU: the loss gradient by hand (same numbers, a fraction of the
        # per-operation cost); anything else through autograd
        self.by_hand = (mlp_backprop.MLPLossGrad(model)
                        if not autograd and intrinsic is None and self.device.type == "cpu"
                        and mlp_backprop.supports(model) else None)

    def _advantages(self, batch: dict[str, np.ndarray], values: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``values``: (T+1, N), or (T+1, N, 2) with an intrinsic head. Returns the
        advantages (T x N,) and the returns (T x N,), or (T x N, 2)."""
        cfg = self.cfg
        T = batch["rewards"].shape[0]
        rewards = batch["rewards"] + batch["bootstrap"]
        lengths = batch.get("lengths")
        if self.intrinsic is None:
            adv, ret = gae(rewards, values[:T], values[T], batch["dones"], cfg.gamma,
                           cfg.gae_lambda, lengths)
            adv, ret = adv.reshape(-1), ret.reshape(-1)
        else:  # the intrinsic return runs on across episode ends
            ext_adv, ext_ret = gae(rewards, values[:T, :, 0], values[T, :, 0], batch["dones"],
                                   cfg.gamma, cfg.gae_lambda)
            int_rewards = batch["int_rewards"]
            int_adv, int_ret = gae(int_rewards, values[:T, :, 1], values[T, :, 1],
                                   np.zeros_like(int_rewards), cfg.int_gamma, cfg.gae_lambda)
            adv = (cfg.ext_coef * ext_adv + cfg.int_coef * int_adv).reshape(-1)
            ret = np.stack([ext_ret.reshape(-1), int_ret.reshape(-1)], axis=-1)
        if cfg.normalize_advantage:
            kept = adv if lengths is None else adv[valid_steps(lengths, T)]
            m = self.merge(Moments.of(kept))  # the global batch's mean and std
            adv = ((adv - m.mean) / (np.sqrt(m.var) + 1e-8)).astype(np.float32)
        return adv, ret

    def update(self, batch: dict[str, np.ndarray], clip: float, rng: np.random.Generator
               ) -> list[dict]:
        """``batch``: obs (T+1, N, ...), actions (T, N, ...), rewards, dones, bootstrap (T, N).
        Returns the statistics of each minibatch step; ``rng`` orders the minibatches."""
        cfg, model, averager, dev = self.cfg, self.model, self.averager, self.device
        T, N = batch["rewards"].shape
        n = T * N
        obs_tn = torch.from_numpy(batch["obs"]).to(dev)
        obs_all = obs_tn.reshape(((T + 1) * N,) + tuple(obs_tn.shape[2:]))
        actions = torch.from_numpy(batch["actions"]).to(dev)
        actions = actions.reshape((n,) + tuple(actions.shape[2:]))
        with torch.no_grad():
            out, values_all = rollout_outputs(model, obs_tn, batch)
            old_logp, _ = model.log_prob_entropy(out[:n], actions)
        values = values_all.cpu().numpy().reshape(T + 1, N, *values_all.shape[1:])
        adv, ret = self._advantages(batch, values)
        obs = obs_all[:n]
        old_values = values_all[:n]
        if self.by_hand is not None:  # normalized once: the statistics hold for the batch
            with torch.no_grad():
                x = model._flat(obs)
        adv_t = torch.from_numpy(adv).to(dev)
        ret_t = torch.from_numpy(ret).to(dev)
        extras, kl_slot = averager.extras, self.kl_slot
        lengths = batch.get("lengths")
        # the steps trained on: all, or those of rollouts cut short before their end
        kept = None if lengths is None else np.flatnonzero(valid_steps(lengths, T))
        count = n if kept is None else len(kept)
        # a recurrent policy's minibatches are whole env sequences (columns), replayed through
        # the core from their start
        sequences = Sequences(model, obs_tn, batch) if is_recurrent(model) else None
        if sequences is not None:
            count = N
        bounds = np.linspace(0, count, self.minibatches + 1).astype(np.int64)
        stats: list[dict] = []
        for _ in range(cfg.n_epochs):
            if sequences is not None:
                order = rng.permutation(N)
            elif kept is not None:
                order = torch.from_numpy(kept[rng.permutation(count)]).to(dev)
            elif self.minibatches > 1:
                order = torch.from_numpy(rng.permutation(n)).to(dev)
            else:
                order = None
            for k in range(self.minibatches):
                if sequences is not None:
                    columns = order[bounds[k]:bounds[k + 1]]
                    part = sequences.steps(columns)
                elif order is None:
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
                    if sequences is not None:
                        out_b, v_b = sequences.outputs(columns)
                    else:
                        out_b, v_b = model(obs[part])
                    logp, entropy = model.log_prob_entropy(out_b, actions[part])
                    loss = ppo_loss(logp, old_logp[part], adv_t[part], v_b, old_values[part],
                                    ret_t[part], entropy, clip, cfg.clip_range_vf, cfg.vf_coef,
                                    cfg.ent_coef)
                    total_loss = loss.total
                    extra = []
                    if self.intrinsic is not None:
                        rnd_loss = self.intrinsic.loss(part)
                        total_loss = total_loss + rnd_loss
                        extra = [rnd_loss.detach()]
                    averager.zero_grad()
                    averager.backward(total_loss)
                    scalars = torch.stack([total_loss.detach(), loss.policy.detach(),
                                           loss.value.detach(), loss.entropy.detach(),
                                           loss.approx_kl, loss.clip_fraction, *extra]).tolist()
                total, policy, value, ent, approx_kl, clip_fraction = scalars[:6]
                extras[kl_slot] = approx_kl * averager.share
                averager.average()
                mean_kl = float(extras[kl_slot])  # over the learners
                if cfg.target_kl is not None and mean_kl > 1.5 * cfg.target_kl:
                    self.kl_stops += 1  # the same verdict on every learner
                    return stats
                grad_norm = averager.clip_norm_(cfg.max_grad_norm)
                skipped = not averager.finite
                stats.append({"skipped": skipped, "loss": total, "policy_loss": policy,
                              "value_loss": value, "entropy": ent,
                              "approx_kl": mean_kl, "clip_fraction": clip_fraction,
                              "grad_norm": grad_norm})
                if self.intrinsic is not None:
                    stats[-1]["rnd_loss"] = scalars[6]
                if skipped:
                    if cfg.nonfinite == "stop":
                        return stats
                    continue
                self.optimizer.step()
                averager.stepped()
        timing.switch("other")
        return stats
