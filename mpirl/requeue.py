"""``python -m mpirl.requeue LAUNCH...``: run a training launch inside a SLURM batch job so that
it survives time limits and preemption.

Use it as the batch script's last command, with ``exec`` so that it *is* the batch shell::

    #SBATCH --signal=B:USR1@120
    #SBATCH --requeue
    exec python -m mpirl.requeue srun python -m mpirl.train --auto-resume ...

It starts the launch command, passes SIGUSR1 and SIGTERM on to it (``srun`` and ``mpirun``
forward them to every rank, and mpirl then checkpoints and exits with 3), and when the launch
ends with 3 it runs ``scontrol requeue $SLURM_JOB_ID``. The requeued job runs the same script
again; ``--auto-resume`` finds the run directory (named after the job id) and continues. Any
other exit code ends the job with that code, so a run that finished for real does not requeue.
Only the standard library is imported here: the batch shell stays small.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Sequence

PREEMPTED = 3  # mpirl.runtime.exit_codes.PREEMPTED, repeated to keep this module free of imports
REQUEUE_GRACE_S = 120.0
FORWARDED = (signal.SIGUSR1, signal.SIGTERM)


def _say(text: str) -> None:
    print(f"mpirl.requeue: {text}", file=sys.stderr, flush=True)


def run(command: Sequence[str], requeue: Sequence[str] | None = None) -> int:
    """Run ``command``, forwarding stop signals; requeue the job if it exits with 3."""
    started: list[subprocess.Popen] = []
    pending: list[int] = []

    def forward(signum, frame):
        if not started:  # arrived before the launch began: pass it on once it has
            pending.append(signum)
            return
        _say(f"got {signal.Signals(signum).name}; passing it to {command[0]} "
             f"(pid {started[0].pid})")
        try:
            started[0].send_signal(signum)
        except ProcessLookupError:
            pass

    for s in FORWARDED:  # before the launch, so no signal finds the default action
        signal.signal(s, forward)
    child = subprocess.Popen(list(command))
    started.append(child)
    for signum in pending:
        forward(signum, None)
    code = child.wait()
    if code == PREEMPTED:
        job = os.environ.get("SLURM_JOB_ID")
        by_slurm = requeue is None and job is not None
        if by_slurm:
            requeue = ["scontrol", "requeue", job]
        if requeue:
            _say(f"the run stopped at a checkpoint; requeueing: {' '.join(requeue)}")
            result = subprocess.run(list(requeue))
            if result.returncode != 0:
                _say(f"requeue failed (exit {result.returncode}); resubmit the job to continue")
            elif by_slurm:
                # Slurm now ends this job instance itself; exiting first would let the job be
                # recorded as failed before the requeue takes hold
                time.sleep(REQUEUE_GRACE_S)
        else:
            _say("the run stopped at a checkpoint; not in a SLURM job, so nothing to requeue")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
