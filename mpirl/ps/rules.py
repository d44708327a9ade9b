"""Update rules a parameter server applies to its slice: ``apply(grad)`` changes the slice in
place. They are elementwise, so S servers on S slices compute exactly what one server would
on the whole vector."""
from __future__ import annotations

import numpy as np
import torch


class OptimizerRule:
    """A torch optimizer (RMSProp or Adam) over a float32 slice, sharing its memory.

    The optimizer statistics live on the server, so every worker's gradient updates the same
    statistics: the shared RMSProp of the A3C paper (Mnih et al. 2016, arXiv:1602.01783, S.4).
    """

    def __init__(self, values: np.ndarray, kind: str, lr: float):
        self.param = torch.nn.Parameter(torch.from_numpy(values), requires_grad=False)
        if kind == "rmsprop":
            self.optimizer = torch.optim.RMSprop([self.param], lr=lr, alpha=0.99, eps=1e-5)
        elif kind == "adam":
            self.optimizer = torch.optim.Adam([self.param], lr=lr, eps=1e-5)
        else:
            raise ValueError(f"unknown optimizer {kind!r}")

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def apply(self, grad: np.ndarray) -> None:
        self.param.grad = torch.from_numpy(grad)
        self.optimizer.step()
        self.param.grad = None

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()


class SGDRule:
    """``values -= lr * grad``: with the gradient of 0.5 * td**2 per table entry, a tabular
    Q-learning step."""

    def __init__(self, values: np.ndarray, lr: float):
        self.values, self.lr = values, lr

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def apply(self, grad: np.ndarray) -> None:
        self.values -= self.lr * grad
