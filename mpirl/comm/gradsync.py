"""Gradient averaging across learners through one flat buffer and one allreduce.

Contract: create a ``GradientAverager`` over a model's parameters; per update call
``announce()`` before the forward pass, ``zero_grad()`` instead of ``optimizer.zero_grad()``,
``backward(loss)`` instead of ``loss.backward()``, then ``average()``; every learner then holds
the gradient of the global mean loss and can clip (``clip_norm_``) and step identically.
``announce`` lets the learners' rendezvous complete while they compute; without it,
``average`` meets the others first and then reduces.

A few named ``extras`` slots ride along in the same buffer: values every learner adds up with
the gradients (an algorithm's approximate KL, say), so values that all learners must share cost
no extra collective. A ``control`` object's values (a stop request, a checkpoint due) ride the
same way in every allreduce: the run's decisions need no collective of their own. One slot is
the averager's own: it counts learners whose loss was not finite, and with the gradient's norm
it tells every learner, identically, whether the update is sound (``finite``).

Each parameter's ``.grad`` is a view into the flat buffer, so backward writes straight into it
and no packing copy is needed. The slots after the gradient live in host memory. On CUDA the
gradient is staged through one pinned host array that also holds the slots (one copy each way).

Model averaging (``average_every``, ``--sync average``): ``average`` then leaves each learner's
own gradient (of its own mean loss) and sums nothing; after every optimizer step the trainer
calls ``stepped``, and every ``average_every`` steps the learners average their parameters
(weighted by their shares), with any further tensors they must hold alike (``shared``), in one
allreduce that also carries the control values. A learner whose loss or gradient is not finite
steps with a zero gradient instead, and the count reaches every learner at the next averaging
step (``skipped``): skipping alone would put it out of step with the others' averaging.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from mpirl.comm.core import Comm, announce_arrival, broadcast_, raw_allreduce_sum_, rendezvous
from mpirl.runtime import timing


class GradientAverager:
    """Averages the gradients of ``params`` over ``comm``.

    ``share`` is this learner's fraction of the global batch (n_local / n_total). ``backward``
    scales the local loss by ``share``, so the sum over learners is the exact gradient of the
    mean loss over the whole batch, uneven batches included, with no pass over the gradient
    buffer. Default: equal shares.

    ``extras`` names caller-owned slots (``extras[slots[name]]``, a float array), summed over the
    learners by ``average``: set them before every ``average``. ``control`` (an object with
    ``local`` and ``summed`` arrays and a ``reduced`` flag, ``mpirl.algos.api.Control``) has
    its ``local`` values summed into ``summed`` by every ``average``.

    ``staged`` (default: for parameters off the CPU) keeps the gradient apart from the host
    array the allreduce sums, and copies it there and back around each allreduce.

    ``average_every`` switches to model averaging (see the module's text): ``share`` then
    weights this learner's parameters in the average, and the gradient is of its own mean
    loss (``self.share`` is 1). ``shared()`` gives the further tensors averaged with them.
    ``reduced_bytes`` counts the bytes this learner has put into allreduces.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], comm: Comm | None,
                 share: float | None = None, extras: Sequence[str] = (), control=None,
                 staged: bool | None = None, average_every: int | None = None,
                 shared: Callable[[], list[torch.Tensor]] | None = None):
        self.params = [p for p in params if p.requires_grad]
        self.comm = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.share = (1.0 / self.size) if share is None else float(share)
        self.average_every = average_every
        self.model_share = self.share
        if average_every is not None:
            self.share = 1.0
        self._shared = shared or (lambda: [])
        self.since_average = 0   # optimizer steps since the last averaging step
        self._local_skips = 0     # non-finite updates here since the last averaging step
        self.skipped = 0          # non-finite updates over all learners, as of the last one
        self.averaging_steps = 0
        self.reduced_bytes = 0
        device = self.params[0].device
        dtype = self.params[0].dtype
        self.numel = n = sum(p.numel() for p in self.params)
        self.control = control
        controls = 0 if control is None else len(control.local)
        tail = 1 + controls + len(extras)  # the non-finite flag, control values, extras
        self._host = None
        if staged is None:
            staged = device.type != "cpu"
        if not staged:  # one buffer: the gradient, then the slots
            self.buffer = torch.zeros(n + tail, dtype=dtype)
            self.flat = self.buffer[:n]
            host = self.buffer.numpy()
        else:  # the gradient on the device; a (pinned) host copy of it, then the slots
            self.flat = torch.zeros(n, device=device, dtype=dtype)
            self._host = torch.zeros(n + tail, dtype=dtype, pin_memory=device.type == "cuda")
            host = self._host.numpy()
        self._reduced = host  # what the allreduce sums
        self._nonfinite = host[n:n + 1]
        self._control = host[n + 1:n + 1 + controls]
        self.extras = host[n + 1 + controls:]
        self.slots = {name: i for i, name in enumerate(extras)}
        # after ``average`` and ``clip_norm_``: every loss and the summed gradient are finite
        # (the same answer on every learner)
        self.finite = True
        offset = 0
        for p in self.params:
            k = p.numel()
            p.grad = self.flat[offset:offset + k].view_as(p)
            offset += k
        self._checked = False
        self._arrival = None

    def announce(self) -> None:
        """Tell the other learners this one is computing its gradient (call before forward)."""
        if self.size > 1 and self._arrival is None and (
                self.average_every is None or self.since_average + 1 >= self.average_every):
            self._arrival = announce_arrival(self.comm)  # (averaging: the update before one)

    def zero_grad(self, gradient: bool = True) -> None:
        """Clear the gradient and the flag slot (not ``extras``: set those each update).
        ``gradient=False`` clears the flag only, for a caller that then writes every
        parameter's gradient whole (``mpirl.algos.dqn.direct``)."""
        if not gradient:
            self._nonfinite[0] = 0.0
        elif self._host is None:
            self.buffer[:self.numel + 1].zero_()
        else:
            self.flat.zero_()
            self._nonfinite[0] = 0.0

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate this learner's mean loss, weighted by its share of the global batch.
        A non-finite loss is flagged for every learner to see after ``average``."""
        self.check_loss(loss)
        (loss * self.share if self.share != 1.0 else loss).backward()

    def check_loss(self, loss: torch.Tensor | float) -> None:
        """Flag a non-finite local loss for every learner to see after ``average`` (for
        gradients written into the buffer without ``backward``)."""
        finite = (math.isfinite(loss) if isinstance(loss, float)
                  else bool(torch.isfinite(loss.detach())))
        if not finite:
            self._nonfinite[0] = 1.0

    def _check_views(self) -> None:
        start = self.flat.data_ptr()
        end = start + self.numel * self.flat.element_size()
        for p in self.params:
            if p.grad is None or not start <= p.grad.data_ptr() < end:
                raise RuntimeError("a parameter's .grad no longer lives in the averaging buffer; "
                                   "call GradientAverager.zero_grad(), not optimizer.zero_grad()")

    def average(self) -> torch.Tensor:
        """Sum the share-weighted local gradients over all learners, in place: every learner
        then holds the gradient of the global mean loss. Returns the flat gradient. (With
        model averaging: the local gradient, zeroed if it is not finite.)"""
        if not self._checked:
            self._check_views()
            self._checked = True
        if self.average_every is not None:
            timing.switch("optimizer")
            if float(self._nonfinite[0]) != 0.0:
                self._skip_locally()
            self.finite = True
            return self.flat
        control = self.control
        if control is not None:  # summed afresh by every allreduce
            self._control[:] = control.local
        if self.size > 1:
            arrival, self._arrival = self._arrival, None
            if self._host is not None:
                self._host[:self.numel].copy_(self.flat)
            # as allreduce_sum_, in two timed parts: waiting on peers, then the reduction
            timing.switch("wait_learners")
            rendezvous(self.comm, arrival, what="the other learners at the gradient allreduce")
            timing.switch("allreduce")
            raw_allreduce_sum_(self.comm, self._reduced)
            self.reduced_bytes += self._reduced.nbytes
            if self._host is not None:
                self.flat.copy_(self._host[:self.numel], non_blocking=False)
        if control is not None:
            control.summed[:] = self._control
            control.reduced = True
        timing.switch("optimizer")  # what follows the averaging: clipping, the step
        self.finite = float(self._nonfinite[0]) == 0.0
        return self.flat

    def clip_norm_(self, max_norm: float) -> float:
        """Clip the (already averaged) gradient to a global L2 norm; returns the norm before.
        A non-finite norm clears ``finite`` and leaves the gradient as it is."""
        norm = float(torch.linalg.vector_norm(self.flat))
        if not math.isfinite(norm):
            self.nonfinite()
        elif max_norm > 0 and norm > max_norm:
            self.flat.mul_(max_norm / (norm + 1e-6))
        return norm


    # ------------------------------------------------------------------ model averaging
    def nonfinite(self) -> None:
        """The averaged gradient is not finite: with gradient averaging the update is skipped
        (``finite`` False, the same on every learner); with model averaging this learner
        steps with a zero gradient and counts the skip (summed at the next averaging step)."""
        if self.average_every is not None:
            self._skip_locally()
        else:
            self.finite = False

    def _skip_locally(self) -> None:
        self.flat.zero_()
        self._nonfinite[0] = 0.0
        self._local_skips += 1

    def stepped(self) -> None:
        """After each optimizer step: with model averaging, average the parameters every
        ``average_every`` steps (a collective: every learner makes the same steps)."""
        if self.average_every is None:
            return
        self.since_average += 1
        if self.since_average >= self.average_every:
            self.synchronize()

    def synchronize(self) -> None:
        """With model averaging and steps made since the last averaging step: average now
        (a collective), so that every learner holds the same parameters; the control values
        are summed in the same allreduce. Otherwise nothing."""
        if self.average_every is None or self.since_average == 0:
            return
        tensors = [p.data for p in self.params] + list(self._shared())
        sizes = [t.numel() for t in tensors]
        n = sum(sizes)
        control = self.control
        controls = 0 if control is None else len(control.local)
        timing.switch("other")
        flat = torch.cat([t.detach().reshape(-1) for t in tensors]).cpu()
        buffer = np.empty(n + 1 + controls, dtype=flat.numpy().dtype)
        buffer[:n] = flat.numpy()
        buffer[:n] *= self.model_share
        buffer[n] = self._local_skips
        if control is not None:
            buffer[n + 1:] = control.local
        if self.size > 1:
            timing.switch("wait_learners")
            arrival, self._arrival = self._arrival, None
            rendezvous(self.comm, arrival, what="the other learners at a model-averaging step")
            timing.switch("allreduce")
            raw_allreduce_sum_(self.comm, buffer)
            self.reduced_bytes += buffer.nbytes
        timing.switch("other")
        offset = 0
        for t, k in zip(tensors, sizes):
            part = torch.from_numpy(buffer[offset:offset + k]).view(t.shape)
            t.copy_(part.to(device=t.device, dtype=t.dtype))
            offset += k
        self.skipped += int(round(buffer[n]))
        if control is not None:
            control.summed[:] = buffer[n + 1:]
            control.reduced = True
        self._local_skips = 0
        self.since_average = 0
        self.averaging_steps += 1


def optimizer_tensors(optimizer) -> list[torch.Tensor]:
    """The state tensors of an optimizer (its moments), for averaging: torch optimizers',
    ``mpirl.algos.optim``'s flat ones, and those grouped by ``StepTogether``."""
    if hasattr(optimizer, "optimizers"):
        return [t for inner in optimizer.optimizers for t in optimizer_tensors(inner)]
    if isinstance(optimizer, torch.optim.Optimizer):
        return [v for state in optimizer.state.values() for v in state.values()
                if torch.is_tensor(v) and v.dim() > 0]
    return [v for v in vars(optimizer).values()
            if torch.is_tensor(v) and v.dim() > 0 and v is not getattr(optimizer, "param", None)]


class FlatParameters:
    """A module's parameters as views into one flat tensor, ``vector``.

    Weights then travel without packing: send ``vector`` (CPU) and receive straight into it.
    Load weights only through ``vector``/``load_``: ``vector_to_parameters`` would replace the
    views.
    """

    def __init__(self, module: torch.nn.Module):
        params = list(module.parameters())
        self.numel = sum(p.numel() for p in params)
        self.vector = torch.zeros(self.numel, dtype=params[0].dtype, device=params[0].device)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self.vector[offset:offset + n].copy_(p.reshape(-1))
                p.data = self.vector[offset:offset + n].view_as(p)
                offset += n

    def load_(self, values: np.ndarray | torch.Tensor) -> None:
        """Copy a flat vector of ``numel`` values into the parameters."""
        self.vector.copy_(torch.as_tensor(values)[:self.numel])

    def to_numpy(self, out: np.ndarray) -> np.ndarray:
        """Copy the parameters into the first ``numel`` slots of a host array."""
        out[:self.numel] = self.vector.detach().cpu().numpy()
        return out


def broadcast_parameters(params: FlatParameters, comm: Comm | None, root: int = 0) -> None:
    """Make every rank of ``comm`` hold ``root``'s parameters."""
    if comm is None or comm.Get_size() == 1:
        return
    host = params.to_numpy(np.zeros(params.numel, dtype=np.float32))
    broadcast_(comm, host, root=root)
    params.load_(host)
