"""The forward and backward passes of an MLP actor-critic written out in numpy, for losses
whose gradient with respect to the network outputs is known in closed form.

For the small MLPs of classic control and MuJoCo, a learner's update on a CPU is mostly fixed
per-operation cost (autograd's graph, module calls) and torch's slow single-thread tanh. Here
the forward pass keeps its activations, and backpropagation through the linear layers and
tanh/ReLU writes each parameter's gradient straight into the learner's flat gradient buffer
(the parameters' ``.grad`` views). ``ActorCriticPass`` holds both networks' layers and
per-batch-size buffers; a loss (PPO's, IMPALA's) fills the gradient at the outputs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mpirl.nets.actor_critic import ActorCritic, CNNActorCritic
from mpirl.nets.mlp import activate_, linear_stack


def supports(model) -> bool:
    """Whether ``model`` is an MLP actor-critic this module can differentiate by hand."""
    if (not isinstance(model, ActorCritic) or isinstance(model, CNNActorCritic)
            or model.value_heads != 1 or getattr(model, "recurrent", False)):
        return False
    layers = list(model.pi) + list(model.vf)
    return all(isinstance(m, (nn.Linear, nn.Tanh, nn.ReLU)) for m in layers)


# torch's matmul is the faster one here only for products of two wide operands (a 64x64 hidden
# layer over a minibatch); numpy's BLAS wins on thin ones (few inputs or outputs) and on the
# transposed products of the weight gradients. The choice depends on shapes alone, so every run
# computes the same numbers.
_WIDE = 32


class Layer:
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


class Buffers:
    """Activations and gradients of one network for minibatches of ``m`` rows, as arrays and
    as tensors over the same memory."""

    def __init__(self, layers: list[Layer], m: int):
        self.out = [np.empty((m, layer.width), np.float32) for layer in layers]
        self.grad = [np.empty((m, layer.width), np.float32) for layer in layers]
        self.out_t = [torch.from_numpy(a) for a in self.out]
        self.grad_t = [torch.from_numpy(a) for a in self.grad]
        self.scratch = [np.empty((m, layer.width), np.float32) for layer in layers]


def forward(layers: list[Layer], buf: Buffers, x: np.ndarray, x_t: torch.Tensor) -> None:
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


def backward(layers: list[Layer], buf: Buffers, x: np.ndarray) -> None:
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


def categorical(logits: np.ndarray, actions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, all log-probabilities, the actions' log-probabilities, entropies) of a
    softmax policy's ``logits`` (rows, actions), for a loss's gradient at the logits."""
    shifted = logits - logits.max(-1, keepdims=True)
    probs = np.exp(shifted)
    total_p = probs.sum(-1, keepdims=True)
    probs /= total_p
    logp_all = shifted - np.log(total_p)
    logp = logp_all[np.arange(len(logits)), actions]
    return probs, logp_all, logp, -(probs * logp_all).sum(-1)


class ActorCriticPass:
    """Both networks of an MLP actor-critic (``supports``) as layers over the model's own
    memory, with buffers for each batch size seen. ``forward`` keeps every activation;
    after the caller writes the gradient at the policy output (``pi_grad``) and the value
    output (``vf_grad``), ``backward`` writes every parameter's gradient."""

    def __init__(self, model):
        self._stacks = (linear_stack(model.pi), linear_stack(model.vf))
        self.pi = self.vf = None  # taken at the first call (the grads exist by then)
        self._buffers: dict[int, tuple[Buffers, Buffers]] = {}
        self.b_pi = self.b_vf = None
        self._x = None

    def forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The policy output (rows, out) and values (rows,) of ``x`` (the observations as the
        model's first layers take them, ``model._flat(obs)``), as arrays the next call
        overwrites."""
        if self.pi is None:
            self.pi, self.vf = ([Layer(lin, act) for lin, act in stack]
                                for stack in self._stacks)
        m = x.shape[0]
        if m not in self._buffers:
            self._buffers[m] = (Buffers(self.pi, m), Buffers(self.vf, m))
        self.b_pi, self.b_vf = self._buffers[m]
        x_t = x.detach().contiguous()
        self._x = x_t.numpy()
        forward(self.pi, self.b_pi, self._x, x_t)
        forward(self.vf, self.b_vf, self._x, x_t)
        return self.b_pi.out[-1], self.b_vf.out[-1][:, 0]

    @property
    def pi_grad(self) -> np.ndarray:
        """Where the caller writes d loss / d policy output, (rows, out)."""
        return self.b_pi.grad[-1]

    @property
    def vf_grad(self) -> np.ndarray:
        """Where the caller writes d loss / d value, (rows,)."""
        return self.b_vf.grad[-1][:, 0]

    def backward(self) -> None:
        backward(self.pi, self.b_pi, self._x)
        backward(self.vf, self.b_vf, self._x)
