"""The forward and backward passes of DQN's MLP Q-network, written out as matrix products.

At the sizes DQN trains (minibatches of 32-512 rows, a few layers of 64-512 units) autograd's
bookkeeping costs about as much as the arithmetic: recording the graph, one kernel per node,
adding every gradient into its ``.grad``. Written out, an update is its matrix products and a
few elementwise passes: the online network sees the observations and the next observations in
one product over both, and each weight's gradient is written by the product that computes it
straight into the gradient-averaging buffer (the parameters' ``.grad`` views). The gradients are
autograd's to rounding (tested against it for every variant: ReLU or tanh, dueling or not).
Unlike the actor-critics' numpy passes (``mpirl.nets.backprop``) these are torch operations,
so a learner on ``cuda`` runs them too; at DQN's widths torch's products are the faster ones.
"""
from __future__ import annotations

import torch

__all__ = ["DirectQ"]


class DirectQ:
    """Forward and backward passes of a ``QNetwork`` (which it reads, never copies: its
    weights may change between calls). Call ``forward`` under ``torch.no_grad()``."""

    def __init__(self, model):
        self.layers = [(layer.weight, layer.bias) for layer in model._layers]
        self.head = (model.head[0].weight, model.head[0].bias)
        self.value = ((model.value_head[0].weight, model.value_head[0].bias)
                      if model.dueling else None)
        self.relu = model._act is torch.nn.functional.relu

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Q-values of the flat float rows ``x`` and every layer's input (for ``backward``)."""
        inputs = [x]
        for w, b in self.layers:
            h = torch.addmm(b, inputs[-1], w.t())
            inputs.append(h.relu_() if self.relu else h.tanh_())
        w, b = self.head
        q = torch.addmm(b, inputs[-1], w.t())
        if self.value is not None:
            v = torch.addmm(self.value[1], inputs[-1], self.value[0].t())
            q = v + q - q.mean(-1, keepdim=True)
        return inputs, q

    def backward(self, inputs: list[torch.Tensor], dq: torch.Tensor) -> None:
        """Write the gradient of sum(dq * Q) over the first ``len(dq)`` rows of the forward
        pass that gave ``inputs`` into every parameter's ``.grad`` (replacing it)."""
        rows = dq.shape[0]
        last = inputs[-1][:rows]
        w, b = self.head
        if self.value is not None:  # q = v + a - mean(a)
            dv = dq.sum(-1, keepdim=True)
            da = dq - dv / dq.shape[-1]
            vw, vb = self.value
            torch.mm(dv.t(), last, out=vw.grad)
            torch.sum(dv, 0, out=vb.grad)
            dh = torch.addmm(torch.mm(dv, vw), da, w)
        else:
            da = dq
            dh = torch.mm(da, w)
        torch.mm(da.t(), last, out=w.grad)
        torch.sum(da, 0, out=b.grad)
        for i in range(len(self.layers) - 1, -1, -1):
            w, b = self.layers[i]
            out = inputs[i + 1][:rows]
            dz = (torch.ops.aten.threshold_backward(dh, out, 0) if self.relu
                  else torch.ops.aten.tanh_backward(dh, out))
            if w.shape[1] < w.shape[0]:  # a narrow input (the observation): the product
                # with the wide side as its columns, then transposed, runs 2x as fast
                w.grad.copy_(torch.mm(inputs[i][:rows].t(), dz).t())
            else:
                torch.mm(dz.t(), inputs[i][:rows], out=w.grad)
            torch.sum(dz, 0, out=b.grad)
            if i > 0:
                dh = torch.mm(dz, w)
