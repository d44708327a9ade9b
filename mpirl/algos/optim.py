"""Optimizers for learners: torch's RMSProp and Adam, and both over one flat parameter for
learners that make many small updates. (``MinibatchOptions``, the minibatch option of the
algorithms that sample minibatches, lives in ``mpirl.config.general``, which needs no torch.)"""
from __future__ import annotations

import math

import torch

from mpirl.config.general import MinibatchOptions  # noqa: F401


def make_optimizer(cfg, params, fused: bool = False) -> torch.optim.Optimizer:
    """--optimizer over ``params``, as a torch optimizer. ``fused`` takes one flat parameter:
    the step is then one kernel. (The learners use the flat optimizers below: a torch
    optimizer's first use imports torch._dynamo, about as long as importing torch itself.)"""
    if cfg.optimizer == "rmsprop":  # torch's RMSprop has no fused kernel
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5, foreach=True)
    kind = {"fused": True} if fused else {"foreach": True}
    return torch.optim.Adam(params, lr=cfg.lr, eps=1e-5, **kind)


def flat_parameter(params, averager, span: tuple[int, int] | None = None
                   ) -> torch.nn.Parameter:
    """The trainable parameters of a flattened network (``mpirl.comm.FlatParameters``) as one
    parameter whose gradient is the averager's flat buffer (``span``: the part of it that is
    this network's, when the averager covers further networks): a flat optimizer then steps
    the whole network in a few operations. The trainable parameters must come first in the
    network (statistics such as an observation normalizer last)."""
    start, stop = span if span is not None else (0, averager.numel)
    flat = torch.nn.Parameter(params.vector[:stop - start], requires_grad=False)
    flat.grad = averager.flat[start:stop]
    return flat


def flat_optimizer(cfg, params, averager, span: tuple[int, int] | None = None,
                   adam_eps: float = 1e-5):
    """--optimizer over the flattened network ``params`` (``mpirl.comm.FlatParameters``) whose
    gradient is ``averager``'s buffer (or its ``span``): a step is one kernel (Adam) or a few
    in-place operations (RMSProp) on one tensor."""
    return optimizer_over(cfg, flat_parameter(params, averager, span), adam_eps)


def optimizer_over(cfg, param: torch.Tensor, adam_eps: float = 1e-5):
    """--optimizer over one flat parameter whose ``.grad`` is set: ``FlatAdam`` (with
    ``adam_eps``) or ``FlatRMSprop``."""
    if cfg.optimizer == "adam":
        return FlatAdam(param, cfg.lr, eps=adam_eps)
    return FlatRMSprop(param, cfg.lr)


def _torch_state(state: dict, key: str) -> torch.Tensor:
    """One moment of a torch optimizer's ``state_dict`` (as checkpoints written with torch's
    optimizers hold it), flattened over its parameters in order."""
    order = state["param_groups"][0]["params"]
    return torch.cat([state["state"][i][key].reshape(-1) for i in order])


class StepTogether:
    """Steps several optimizers as one (a policy's and RND's predictor's, over one gradient
    buffer)."""

    def __init__(self, optimizers: list):
        self.optimizers = optimizers

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


class FlatRMSprop:
    """RMSProp (torch.optim.RMSprop's arithmetic, alpha 0.99, eps 1e-5 as ``make_optimizer``'s,
    no momentum) over one flat parameter whose ``.grad`` is set, in a few in-place
    operations per step; the same interface as ``FlatAdam``."""

    def __init__(self, param: torch.Tensor, lr: float, alpha: float = 0.99, eps: float = 1e-5):
        self.param = param
        self.param_groups = [{"lr": lr, "alpha": alpha, "eps": eps}]
        self.square_avg = torch.zeros_like(param)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        grad = self.param.grad
        self.square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1.0 - group["alpha"])
        avg = self.square_avg.sqrt().add_(group["eps"])
        self.param.data.addcdiv_(grad, avg, value=-group["lr"])

    def state_dict(self) -> dict:
        return {"square_avg": self.square_avg.clone(), "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        if "param_groups" in state:  # torch.optim.RMSprop's, over the same values
            state = {"square_avg": _torch_state(state, "square_avg"),
                     "lr": state["param_groups"][0]["lr"]}
        self.square_avg.copy_(state["square_avg"])
        self.param_groups[0]["lr"] = state["lr"]


class FlatAdam:
    """Adam (Kingma and Ba 2015, with torch.optim.Adam's eps placement) over one flat
    parameter whose ``.grad`` is set: one call of torch's fused Adam kernel per step (the same
    numbers as ``torch.optim.Adam(fused=True)``), or a few in-place operations where the
    kernel is missing.

    Offers what the learner uses of a torch optimizer: ``param_groups[0]['lr']``, ``step``,
    ``state_dict`` and ``load_state_dict``."""

    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-5):
        self.param = param
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps}]
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0
        self._step = torch.zeros((), dtype=torch.float32, device=param.device)  # the kernel's
        self._fused = getattr(torch, "_fused_adam_", None)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self.steps += 1
        grad = self.param.grad
        if self._fused is not None:
            self._step.fill_(self.steps)
            self._fused([self.param.data], [grad], [self.exp_avg], [self.exp_avg_sq], [],
                        [self._step], lr=group["lr"], beta1=beta1, beta2=beta2,
                        weight_decay=0.0, eps=group["eps"], amsgrad=False, maximize=False)
            return
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
        if "param_groups" in state:  # torch.optim.Adam's, over the same values
            first = state["state"][state["param_groups"][0]["params"][0]]
            state = {"steps": int(first["step"]), "exp_avg": _torch_state(state, "exp_avg"),
                     "exp_avg_sq": _torch_state(state, "exp_avg_sq"),
                     "lr": state["param_groups"][0]["lr"]}
        self.steps = int(state["steps"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.param_groups[0]["lr"] = state["lr"]
