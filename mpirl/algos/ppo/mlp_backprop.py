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
from torch import nn

from mpirl.algos.ppo.loss import PPOLoss
from mpirl.nets.actor_critic import ActorCritic, CNNActorCritic
from mpirl.nets.mlp import activate_, linear_stack


def supports(model) -> bool:
    """Whether ``model`` is an MLP actor-critic this module can differentiate by hand."""
    if not isinstance(model, ActorCritic) or isinstance(model, CNNActorCritic):
        return False
    layers = list(model.pi) + list(model.vf)
    return all(isinstance(m, (nn.Linear, nn.Tanh, nn.ReLU)) for m in layers)


# torch's matmul is the faster one here only for products of two wide operands (a 64x64 hidden
# layer over a minibatch); numpy's BLAS wins on thin ones (few inputs or outputs) and on the
# transposed products of the weight gradients. The choice depends on shapes alone, so every run
# computes the same numbers.
_WIDE = 32


class _Layer:
    """One linear layer as the hot loop uses it: weight, bias and their gradients as arrays
    and tensors over the same memory (the gradients are views into the learner's buffer)."""

    def __init__(self, lin: nn.Linear, act: str | None):
        self.weight = lin.weight.detach().numpy()
        self.weight_t = lin.weight.detach()
        self.bias = lin.bias.detach().numpy()
        self.bias_t = lin.bias.detach()
        self.weight_grad = lin.weight.grad.numpy()
        self.bias_grad = lin.bias.grad.numpy()
        self.act = act
        self.width = lin.out_features
        self.wide = lin.in_features >= _WIDE and lin.out_features >= _WIDE


class _Buffers:
    """Activations and gradients of one network for minibatches of ``m`` rows, as arrays and
    as tensors over the same memory."""

    def __init__(self, layers: list[_Layer], m: int):
        self.out = [np.empty((m, layer.width), np.float32) for layer in layers]
        self.grad = [np.empty((m, layer.width), np.float32) for layer in layers]
        self.out_t = [torch.from_numpy(a) for a in self.out]
        self.grad_t = [torch.from_numpy(a) for a in self.grad]
        self.scratch = [np.empty((m, layer.width), np.float32) for layer in layers]
        self.rows = np.arange(m)


def _forward(layers: list[_Layer], buf: _Buffers, x: np.ndarray, x_t: torch.Tensor) -> None:
    """Every layer's output (after its activation) into ``buf.out``."""
    inp, inp_t = x, x_t
    for layer, out, out_t in zip(layers, buf.out, buf.out_t):
        if layer.wide:
            torch.addmm(layer.bias_t, inp_t, layer.weight_t.t(), out=out_t)
        else:
            np.matmul(inp, layer.weight.T, out=out)
            out += layer.bias
        activate_(out, layer.act)
        inp, inp_t = out, out_t


def _backward(layers: list[_Layer], buf: _Buffers, x: np.ndarray) -> None:
    """Backpropagate the gradient at the last output (in ``buf.grad[-1]``) and write the
    gradient of each layer's weight and bias into their ``.grad``."""
    for k in range(len(layers) - 1, -1, -1):
        layer, g = layers[k], buf.grad[k]
        np.matmul(g.T, buf.out[k - 1] if k > 0 else x, out=layer.weight_grad)
        np.add.reduce(g, 0, out=layer.bias_grad)
        if k > 0:
            g_prev, y = buf.grad[k - 1], buf.out[k - 1]
            if layer.width == 1:  # an outer product
                np.multiply(g, layer.weight, out=g_prev)
            elif layer.wide:
                torch.mm(buf.grad_t[k], layer.weight_t, out=buf.grad_t[k - 1])
            else:
                np.matmul(g, layer.weight, out=g_prev)
            act = layers[k - 1].act
            if act == "tanh":  # g (1 - y^2)
                d = buf.scratch[k - 1]
                np.multiply(y, y, out=d)
                np.subtract(1.0, d, out=d)
                np.multiply(g_prev, d, out=g_prev)
            elif act == "relu":
                np.multiply(g_prev, y > 0.0, out=g_prev)


class MLPLossGrad:
    """The PPO loss on a minibatch, and its gradient (scaled by ``share``) written into the
    model's ``.grad`` buffers. Observation normalization is applied as the model does.
    Returns a PPOLoss of Python floats."""

    def __init__(self, model):
        self._stacks = (linear_stack(model.pi), linear_stack(model.vf))
        self.pi = self.vf = None  # taken at the first call (the grads exist by then)
        self.discrete = model.spec.discrete
        self.log_std = None if self.discrete else model.log_std
        self._buffers: dict[int, tuple[_Buffers, _Buffers]] = {}

    def __call__(self, x: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                 advantages: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                 clip: float, clip_vf: float | None, vf_coef: float, ent_coef: float,
                 share: float) -> PPOLoss:
        """``x``: the minibatch's observations as the model's first layers take them
        (``model._flat(obs)``)."""
        if self.pi is None:
            self.pi, self.vf = ([_Layer(lin, act) for lin, act in stack]
                                for stack in self._stacks)
        m = x.shape[0]
        if m not in self._buffers:
            self._buffers[m] = (_Buffers(self.pi, m), _Buffers(self.vf, m))
        b_pi, b_vf = self._buffers[m]
        x_t = x.detach().contiguous()
        x = x_t.numpy()
        old_logp, adv = old_logp.numpy(), advantages.numpy()
        returns = returns.numpy()
        _forward(self.pi, b_pi, x, x_t)
        _forward(self.vf, b_vf, x, x_t)
        out, values = b_pi.out[-1], b_vf.out[-1][:, 0]
        g_out = b_pi.grad[-1]
        if self.discrete:
            rows, index = b_pi.rows, actions.numpy()
            shifted = out - out.max(-1, keepdims=True)
            probs = np.exp(shifted)
            total_p = probs.sum(-1, keepdims=True)
            probs /= total_p
            logp_all = shifted - np.log(total_p)
            logp = logp_all[rows, index]
            entropy = -(probs * logp_all).sum(-1)
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
        _backward(self.pi, b_pi, x)
        np.multiply(g_v, 2.0 * vf_coef * share / m, out=b_vf.grad[-1][:, 0])
        _backward(self.vf, b_vf, x)
        r1 = ratio - 1.0
        approx_kl = float((r1 - log_ratio).sum()) / m
        clip_fraction = np.count_nonzero(np.abs(r1) > clip) / m
        return PPOLoss(total, policy, value, ent, approx_kl, clip_fraction)
