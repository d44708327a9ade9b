"""Update rules a parameter server applies to its slice: ``apply(grad)`` changes the slice in
place. They are elementwise, so S servers on S slices compute exactly what one server would
on the whole vector."""
from __future__ import annotations

import numpy as np
import torch


class OptimizerRule:
    """RMSProp or Adam over a float32 slice, sharing its memory (``mpirl.algos.optim``'s flat
    optimizers: no torch.optim, whose first use imports torch._dynamo).

    The optimizer statistics live on the server, so every worker's gradient updates the same
    statistics: the shared RMSProp of the A3C paper (Mnih et al. 2016, arXiv:1602.01783, S.4).
    """

    def __init__(self, values: np.ndarray, kind: str, lr: float):
        from mpirl.algos.optim import FlatAdam, FlatRMSprop
        self.param = torch.from_numpy(values)
        if kind == "rmsprop":
            self.optimizer = FlatRMSprop(self.param, lr)
        elif kind == "adam":
            self.optimizer = FlatAdam(self.param, lr)
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
