"""The messages between a streaming learner and its actors (world ranks in one ``group``
communicator, the learner at rank 0 in it).

- ``WEIGHTS_TAG``, learner to actor: the policy's flat weights, then ``HEADER`` float32 slots:
  the version (the learner's update count when they were sent, in two exact parts) and the
  fraction of the budget done. A learner has at most one weights message in flight to an
  actor and sends the newest when that one is taken, so no queue of stale weights builds up.
- ``UNROLL_TAG``, actor to learner: one unroll (``RunSetup.make_message`` with ``FIELDS``),
  sent synchronously (``Issend``), so it completes only once the learner has taken it in; an
  actor keeps at most --max-in-flight of them going and then waits: back-pressure.
- ``CONTROL_TAG``, learner to actor: ``[command, exit code, weights messages sent]``. ``SAVE``
  and ``STOP`` ask the actor to stop acting and to report, with ``DRAINED_TAG`` (``[unrolls
  sent]``), once all its unrolls are taken. The learner takes them all, lets its weight sends
  complete, and then sends ``RELEASE`` with the count of weights messages it sent, which the
  actor takes in to the last: after SAVE the actor joins the checkpoint and acts on; after
  STOP it ends. Nothing is left in flight on either side.
"""
from __future__ import annotations

import numpy as np

UNROLL_TAG = 21
WEIGHTS_TAG = 22
CONTROL_TAG = 23
DRAINED_TAG = 24
STOP, SAVE, RELEASE = 1.0, 2.0, 3.0
CONTROL_SIZE = 3
HEADER = 3
_PART = 1 << 20  # each part of a version is below 2**24: exact in float32

# what the execution model adds to each unroll
FIELDS = {
    # the version of the weights the unroll was acted with
    "version": ((1,), np.dtype(np.int64)),
    # how many times the sender has waited for its learner to take its unrolls, in all
    "blocked": ((1,), np.dtype(np.int64)),
}


def write_header(buffer: np.ndarray, version: int, progress: float) -> None:
    """Fill the slots after the weights in a weights message."""
    high, low = divmod(int(version), _PART)
    buffer[-HEADER:] = (high, low, progress)


def read_header(buffer: np.ndarray) -> tuple[int, float]:
    """(version, progress) of a weights message."""
    high, low, progress = buffer[-HEADER:]
    return int(high) * _PART + int(low), float(progress)
