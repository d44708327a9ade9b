"""How many threads a rank may use: torch its share of the cores, not all of them; numpy's
BLAS one."""
from __future__ import annotations

import os
import sys

from threadpoolctl import threadpool_limits


def cpu_share(local_ranks: int, requested: int = 0, images: bool = False) -> int:
    """``requested`` if set, else SLURM_CPUS_PER_TASK (cores the batch system gave each
    rank), else 1, or for image observations (convolutions) usable cores // ranks.

    Cores nobody reserved may be busy, and torch's threads spin while they wait for each
    other: with one of 2 cores taken by another process, 2 threads ran MLP PPO 3-4x and DQN
    (256x256, batch 128) 2.5-4x slower than 1 thread. On idle cores 1 thread was still 1.07x
    faster for PPO, while 2 made that DQN 1.5x faster (``--torch-threads 2`` asks for them)."""
    if requested > 0:
        return requested
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    if not images:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_ranks))


def limit_threads(n: int) -> None:
    """Give torch ``n`` threads: now if this process has imported it, else through
    OMP_NUM_THREADS, which torch reads when it is imported (ranks that act in numpy never
    import it, learners import it once they build their networks)."""
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(n)
    else:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
    # numpy's matrix products in mpirl are small; BLAS threads that spin between them would
    # take the cores torch's threads work on (a 1-rank PPO run fell from 17k to 0.5k steps/s)
    threadpool_limits(limits=1, user_api="blas")
