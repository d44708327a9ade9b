"""Stop requests from the batch system or the user.

SIGTERM (what ``scancel`` and a time limit send) and SIGUSR1 (what ``sbatch --signal=USR1@120``
sends ahead of the limit) only set a flag here; the training loops read it, all ranks agree to
stop at the next update, write a checkpoint and exit with ``EXIT_PREEMPTED``. A rank that is
still waiting on a peer well after the request (``mpirl.comm.STOP_GRACE_S``) gives up on it and
ends the job, so a stop request also ends a job whose peer hangs.

``python -m mpirl.train`` installs the handlers before its imports, which take seconds: a job
stopped while it starts up still stops at a checkpoint.
"""
from __future__ import annotations

import signal
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_received = 0
_received_at = 0.0


def _note(signum: int, frame) -> None:
    global _received, _received_at
    if not _received:
        _received, _received_at = signum, time.monotonic()


def install() -> None:
    """Route the stop signals to the flag (call once, early, in the main thread)."""
    for s in STOP_SIGNALS:
        signal.signal(s, _note)


def requested() -> int:
    """The first stop signal received, or 0."""
    return _received


def seconds_since_request() -> float:
    """Seconds since the first stop signal arrived (0.0 if none has)."""
    return time.monotonic() - _received_at if _received else 0.0


def name(signum: int) -> str:
    try:
        return signal.Signals(int(signum)).name
    except ValueError:
        return f"signal {int(signum)}"
