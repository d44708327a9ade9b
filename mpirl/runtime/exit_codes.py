"""Exit codes of ``python -m mpirl.train``, the same on every rank (and so from mpirun/srun)."""

DONE = 0
FAILED = 1       # a rank raised, died or timed out; the job was aborted
BAD_INPUT = 2    # config, env, run directory or checkpoint unusable; nothing was trained
PREEMPTED = 3    # stopped by SIGTERM/SIGUSR1 after writing a checkpoint: requeue and --resume
DIVERGED = 4     # a loss or gradient became NaN/Inf (with --nonfinite stop)
