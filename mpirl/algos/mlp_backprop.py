"""PPO's loss and its gradient for an MLP actor-critic, with the backward pass written out.

For the small MLPs of classic control and MuJoCo, one PPO minibatch step on a CPU is mostly
fixed per-operation cost: autograd's graph, module calls, the optimizer's bookkeeping. Here the
forward pass keeps its activations, the gradient of the clipped objective with respect to the
network outputs is written in closed form, and backpropagation through the linear layers and
tanh/ReLU writes each parameter's gradient straight into the learner's flat gradient buffer
(the parameters' ``.grad`` views). The result equals autograd's (tested), in fewer and cheaper
operations. ``FlatAdam`` steps the flat parameter vector with Adam in a handful of in-place
operations.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mpirl.algos.ppo import PPOLoss


def supports(model) -> bool:
    """Whether ``model`` is an MLP actor-critic this module can differentiate by hand."""
    from mpirl.models import ActorCritic, CNNActorCritic
    if not isinstance(model, ActorCritic) or isinstance(model, CNNActorCritic):
        return False
    layers = list(model.pi) + list(model.vf)
    return all(isinstance(m, (nn.Linear, nn.Tanh, nn.ReLU)) for m in layers)


def _stack(seq: nn.Sequential) -> list[tuple[nn.Linear, str | None]]:
    """(linear layer, the activation after it or None)."""
    out, mods = [], list(seq)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            out.append((m, "tanh" if isinstance(nxt, nn.Tanh) else
                        "relu" if isinstance(nxt, nn.ReLU) else None))
    return out


def _tensors(layers) -> list[tuple]:
    """(weight, bias, weight grad, bias grad, activation) per layer: plain tensors, so the hot
    loop pays no module attribute lookups. The grads are views into the gradient buffer."""
    return [(lin.weight, lin.bias, lin.weight.grad, lin.bias.grad, act) for lin, act in layers]


def _forward(layers, x: torch.Tensor) -> list[torch.Tensor]:
    """The input and every layer's output (after its activation)."""
    outs = [x]
    for weight, bias, _, _, act in layers:
        z = torch.addmm(bias, outs[-1], weight.t())
        if act == "tanh":  # as 2 sigmoid(2z) - 1: torch's CPU tanh costs several times more
            z = torch.sigmoid(z.mul_(2.0)).mul_(2.0).sub_(1.0)
        elif act == "relu":
            z = torch.relu_(z)
        outs.append(z)
    return outs


def _backward(layers, outs: list[torch.Tensor], g: torch.Tensor) -> None:
    """Backpropagate ``g`` (the gradient at the last output) and write the gradient of each
    layer's weight and bias into their ``.grad``."""
    for k in range(len(layers) - 1, -1, -1):
        weight, _, weight_grad, bias_grad, _ = layers[k]
        torch.mm(g.t(), outs[k], out=weight_grad)
        torch.sum(g, 0, out=bias_grad)
        if k > 0:
            g = torch.mm(g, weight)
            y, act = outs[k], layers[k - 1][4]
            if act == "tanh":
                g = torch.addcmul(g, g * y, y, value=-1.0)  # g (1 - y^2)
            elif act == "relu":
                g = g * (y > 0)


class MLPLossGrad:
    """The PPO loss on a minibatch, and its gradient (scaled by ``share``) written into the
    model's ``.grad`` buffers. Observation normalization is applied as the model does."""

    def __init__(self, model):
        self.model = model
        self._layers = (_stack(model.pi), _stack(model.vf))
        self.pi = self.vf = None  # tensors, taken at the first call (grads exist by then)
        self.discrete = model.spec.discrete
        self.log_std = None if self.discrete else model.log_std
        self._ones = torch.ones(0, 1)  # scatter source for the one-hot of the actions

    def __call__(self, x: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                 advantages: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                 clip: float, clip_vf: float | None, vf_coef: float, ent_coef: float,
                 share: float) -> PPOLoss:
        """``x``: the minibatch's observations as the model's first layers take them
        (``model._flat(obs)``)."""
        if self.pi is None:
            self.pi, self.vf = (_tensors(layers) for layers in self._layers)
        with torch.no_grad():
            a_pi = _forward(self.pi, x)
            a_vf = _forward(self.vf, x)
            out, values = a_pi[-1], a_vf[-1].squeeze(-1)
            m = out.shape[0]
            if self.discrete:
                logp_all = torch.log_softmax(out, dim=-1)
                probs = logp_all.exp()
                logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
                entropy = -(probs * logp_all).sum(-1)
            else:
                log_std = self.log_std
                inv_std = torch.exp(-log_std)
                z = (actions - out) * inv_std
                logp = (-0.5 * z.pow(2)).sum(-1) - (log_std.sum() + 0.5 * math.log(2 * math.pi)
                                                    * out.shape[1])
                entropy = (log_std.sum() + 0.5 * (1.0 + math.log(2 * math.pi)) * out.shape[1]
                           ).expand(m)
            log_ratio = logp - old_logp
            ratio = log_ratio.exp()
            surr1 = ratio * advantages
            surr2 = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
            unclipped = surr1 <= surr2  # where the unclipped branch carries the gradient
            policy = -torch.where(unclipped, surr1, surr2).mean()
            err = (returns - values).pow(2)
            if clip_vf is None:
                g_v = values - returns
            else:
                delta = values - old_values
                clipped = old_values + delta.clamp(-clip_vf, clip_vf)
                err_c = (returns - clipped).pow(2)
                g_v = torch.where(err >= err_c, values - returns,
                                  (clipped - returns) * (delta.abs() < clip_vf))
                err = torch.maximum(err, err_c)
            value = err.mean()
            ent = entropy.mean()
            total = policy + vf_coef * value - ent_coef * ent
            # d loss / d log p, per sample
            g_logp = (surr1 * unclipped).mul_(-share / m)
            if self.discrete:
                # d log p / d logits = onehot(action) - probs
                if self._ones.shape[0] != m:
                    self._ones = out.new_ones(m, 1)
                g_out = probs.neg_().scatter_add_(-1, actions.long().unsqueeze(-1),
                                                  self._ones).mul_(g_logp.unsqueeze(-1))
                if ent_coef:
                    probs = logp_all.exp()
                    g_out += (ent_coef * share / m) * probs * (logp_all + entropy.unsqueeze(-1))
            else:
                g_out = g_logp.unsqueeze(-1) * z * inv_std
                torch.sum(g_logp.unsqueeze(-1) * (z * z - 1.0), 0, out=log_std.grad)
                log_std.grad -= ent_coef * share
            _backward(self.pi, a_pi, g_out)
            _backward(self.vf, a_vf, (g_v * (2.0 * vf_coef * share / m)).unsqueeze(-1))
            approx_kl = (ratio - 1.0).sub_(log_ratio).mean()
            clip_fraction = (ratio - 1.0).abs_().gt_(clip).mean(dtype=torch.float32)
        return PPOLoss(total, policy, value, ent, approx_kl, clip_fraction)


class FlatAdam:
    """Adam (Kingma and Ba 2015, with torch.optim.Adam's eps placement) over one flat
    parameter whose ``.grad`` is set, in a few in-place operations per step.

    Offers what the learner uses of a torch optimizer: ``param_groups[0]['lr']``, ``step``,
    ``state_dict`` and ``load_state_dict``."""

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-5):
        self.param = param
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps}]
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self.steps += 1
        grad = self.param.grad
        self.exp_avg.lerp_(grad, 1.0 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias1 = 1.0 - beta1 ** self.steps
        bias2 = 1.0 - beta2 ** self.steps
        denom = self.exp_avg_sq.sqrt().div_(math.sqrt(bias2)).add_(group["eps"])
        self.param.data.addcdiv_(self.exp_avg, denom, value=-group["lr"] / bias1)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "exp_avg": self.exp_avg.clone(),
                "exp_avg_sq": self.exp_avg_sq.clone(), "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.param_groups[0]["lr"] = state["lr"]
