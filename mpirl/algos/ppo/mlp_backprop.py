"""PPO's loss and its gradient for an MLP actor-critic, with the backward pass written out.

For the small MLPs of classic control and MuJoCo, one PPO minibatch step on a CPU is mostly
fixed per-operation cost: autograd's graph, module calls, the optimizer's bookkeeping. Here the
forward pass keeps its activations, the gradient of the clipped objective with respect to the
network outputs is written in closed form, and backpropagation through the linear layers and
tanh/ReLU writes each parameter's gradient straight into the learner's flat gradient buffer
(the parameters' ``.grad`` views). The result equals autograd's (tested), in fewer and cheaper
operations.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mpirl.algos.ppo.loss import PPOLoss
from mpirl.nets.backprop import ActorCriticPass, categorical, supports

__all__ = ["MLPLossGrad", "supports"]


class MLPLossGrad:
    """The PPO loss on a minibatch, and its gradient (scaled by ``share``) written into the
    model's ``.grad`` buffers. Observation normalization is applied as the model does.
    Returns a PPOLoss of Python floats."""

    def __init__(self, model):
        self.net = ActorCriticPass(model)
        self.discrete = model.spec.discrete
        self.log_std = None if self.discrete else model.log_std

    def __call__(self, x: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                 advantages: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                 clip: float, clip_vf: float | None, vf_coef: float, ent_coef: float,
                 share: float) -> PPOLoss:
        """``x``: the minibatch's observations as the model's first layers take them
        (``model._flat(obs)``)."""
        m = x.shape[0]
        old_logp, adv = old_logp.numpy(), advantages.numpy()
        returns = returns.numpy()
        out, values = self.net.forward(x)
        g_out = self.net.pi_grad
        if self.discrete:
            rows, index = np.arange(m), actions.numpy()
            probs, logp_all, logp, entropy = categorical(out, index)
        else:
            log_std = self.log_std.detach().numpy()
            std = np.exp(log_std)
            inv_std = 1.0 / std
            z = (actions.numpy() - out) / std
            terms = -0.5 * (z * z)  # in the model's order of operations, to its last bit
            terms -= log_std
            terms -= 0.5 * math.log(2 * math.pi)
            logp = terms.sum(-1)
            entropy_one = float(log_std.sum()) + 0.5 * (1.0 + math.log(2 * math.pi)) * out.shape[1]
        log_ratio = logp - old_logp
        ratio = np.exp(log_ratio)
        surr1 = ratio * adv
        surr2 = np.minimum(np.maximum(ratio, 1.0 - clip), 1.0 + clip) * adv
        unclipped = surr1 <= surr2  # where the unclipped branch carries the gradient
        policy = -float(np.minimum(surr1, surr2).sum()) / m
        diff = values - returns
        err = diff * diff
        g_v = diff
        if clip_vf is not None:
            old_values = old_values.numpy()
            delta = values - old_values
            clipped = old_values + np.minimum(np.maximum(delta, -clip_vf), clip_vf)
            err_c = (returns - clipped) ** 2
            g_v = np.where(err >= err_c, diff, (clipped - returns) * (np.abs(delta) < clip_vf))
            err = np.maximum(err, err_c)
        value = float(err.sum()) / m
        ent = float(entropy.sum()) / m if self.discrete else entropy_one
        total = policy + vf_coef * value - ent_coef * ent
        # d loss / d log p, per sample
        g_logp = surr1 * unclipped
        g_logp *= -share / m
        if self.discrete:
            # d log p / d logits = onehot(action) - probs; the entropy term adds
            # ent_coef p (log p + H) per logit
            np.negative(probs, out=g_out)
            g_out[rows, index] += 1.0
            g_out *= g_logp[:, None]
            if ent_coef:
                g_out += (ent_coef * share / m) * probs * (logp_all + entropy[:, None])
        else:
            g_z = g_logp[:, None] * z
            np.multiply(g_z, inv_std, out=g_out)
            grad = self.log_std.grad.numpy()
            np.add.reduce(g_z * z - g_logp[:, None], 0, out=grad)
            grad -= ent_coef * share
        np.multiply(g_v, 2.0 * vf_coef * share / m, out=self.net.vf_grad)
        self.net.backward()
        r1 = ratio - 1.0
        approx_kl = float((r1 - log_ratio).sum()) / m
        clip_fraction = np.count_nonzero(np.abs(r1) > clip) / m
        return PPOLoss(total, policy, value, ent, approx_kl, clip_fraction)
