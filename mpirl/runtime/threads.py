"""How many threads a rank may use: torch its share of the cores, not all of them; numpy's
BLAS one."""
from __future__ import annotations

import os

import torch
from threadpoolctl import threadpool_limits


def cpu_share(local_ranks: int, requested: int = 0) -> int:
    """``requested`` if set, else SLURM_CPUS_PER_TASK, else usable cores // ranks on this node."""
    if requested > 0:
        return requested
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_ranks))


def limit_threads(n: int) -> None:
    torch.set_num_threads(n)
    # numpy's matrix products in mpirl are small; BLAS threads that spin between them would
    # take the cores torch's threads work on (a 1-rank PPO run fell from 17k to 0.5k steps/s)
    threadpool_limits(limits=1, user_api="blas")
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
