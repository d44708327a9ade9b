"""Gradient averaging across learners through one flat buffer and one allreduce.

Contract: create a ``GradientAverager`` over a model's parameters, call ``zero_grad()`` instead
of ``optimizer.zero_grad()``, run ``backward()``, then ``average()``; every learner then holds the
gradient of the global mean loss and can clip (``clip_norm_``) and step identically.

Each parameter's ``.grad`` is a view into the flat buffer, so backward writes straight into it and
no packing copy is needed. On CUDA the buffer is staged through one pinned host array (one copy
each way) unless ``cuda_aware`` says the MPI library reads device memory itself.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from mpirl.comm.core import Comm, allreduce_sum_, broadcast_


class GradientAverager:
    """Averages the gradients of ``params`` over ``comm``.

    ``share`` is this learner's fraction of the global batch (n_local / n_total). Each learner's
    gradient is scaled by ``share`` before the sum, so uneven batches still give the exact
    gradient of the mean loss over the whole batch. Default: equal shares.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], comm: Comm | None,
                 share: float | None = None):
        self.params = [p for p in params if p.requires_grad]
        self.comm = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.share = (1.0 / self.size) if share is None else float(share)
        device = self.params[0].device
        dtype = self.params[0].dtype
        self.numel = sum(p.numel() for p in self.params)
        self.flat = torch.zeros(self.numel, device=device, dtype=dtype)
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = self.flat[offset:offset + n].view_as(p)
            offset += n
        self._checked = False
        self._host = None
        if device.type != "cpu":
            self._host = torch.zeros(self.numel, dtype=dtype, pin_memory=True)

    def zero_grad(self) -> None:
        self.flat.zero_()

    def _check_views(self) -> None:
        start = self.flat.data_ptr()
        end = start + self.numel * self.flat.element_size()
        for p in self.params:
            if p.grad is None or not start <= p.grad.data_ptr() < end:
                raise RuntimeError("a parameter's .grad no longer lives in the averaging buffer; "
                                   "call GradientAverager.zero_grad(), not optimizer.zero_grad()")

    def average(self) -> torch.Tensor:
        """Replace every learner's local gradient by the (share-weighted) mean; returns the flat
        gradient."""
        if not self._checked:
            self._check_views()
            self._checked = True
        if self.size == 1 and self.share == 1.0:
            return self.flat
        self.flat.mul_(self.share)
        if self.size > 1:
            if self._host is None:
                allreduce_sum_(self.comm, self.flat.numpy())
            else:
                self._host.copy_(self.flat)
                allreduce_sum_(self.comm, self._host.numpy())
                self.flat.copy_(self._host, non_blocking=False)
        return self.flat

    def clip_norm_(self, max_norm: float) -> float:
        """Clip the (already averaged) gradient to a global L2 norm; returns the norm before."""
        norm = float(torch.linalg.vector_norm(self.flat))
        if max_norm > 0 and norm > max_norm:
            self.flat.mul_(max_norm / (norm + 1e-6))
        return norm


def parameters_to_numpy(module: torch.nn.Module, out: np.ndarray | None = None) -> np.ndarray:
    """The module's parameters as one float32 vector (into ``out`` when given)."""
    vec = torch.nn.utils.parameters_to_vector(module.parameters()).detach()
    arr = vec.to("cpu", torch.float32).numpy()
    if out is None:
        return arr.copy()
    out[:] = arr
    return out


def numpy_to_parameters(vec: np.ndarray, module: torch.nn.Module) -> None:
    """Load a flat float32 vector into the module's parameters."""
    p0 = next(module.parameters())
    t = torch.from_numpy(vec).to(device=p0.device, dtype=p0.dtype)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(t, module.parameters())


def broadcast_parameters(module: torch.nn.Module, comm: Comm | None, root: int = 0) -> None:
    """Make every rank of ``comm`` hold ``root``'s parameters."""
    if comm is None or comm.Get_size() == 1:
        return
    vec = parameters_to_numpy(module)
    broadcast_(comm, vec, root=root)
    numpy_to_parameters(vec, module)
