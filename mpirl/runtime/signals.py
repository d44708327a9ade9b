"""Stop requests from the batch system or the user.

SIGTERM (what ``scancel`` and a time limit send) and SIGUSR1 (what ``sbatch --signal=USR1@120``
sends ahead of the limit) only set a flag here; the training loops read it, all ranks agree to
stop at the next update, write a checkpoint and exit with ``EXIT_PREEMPTED``.
"""
from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_received = 0


def _note(signum: int, frame) -> None:
    global _received
    if not _received:
        _received = signum


def install() -> None:
    """Route the stop signals to the flag (call once, early, in the main thread)."""
    for s in STOP_SIGNALS:
        signal.signal(s, _note)


def requested() -> int:
    """The first stop signal received, or 0."""
    return _received


def name(signum: int) -> str:
    try:
        return signal.Signals(int(signum)).name
    except ValueError:
        return f"signal {int(signum)}"
