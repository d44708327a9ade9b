"""What mpirl reads from SLURM (and from the launcher) about where its ranks run.

The job id names the run directory (``rundir.default_run_name``) and the CPUs per task set the
thread count (``threads.cpu_share``); this module covers the rest: the node each rank runs on,
and a launch that went wrong (tasks that each became a world of one).
"""
from __future__ import annotations

import os
import socket


def node_name() -> str:
    """The SLURM node this process runs on (``SLURMD_NODENAME``), else the host name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def singleton_launch(world_size: int) -> str | None:
    """An error message if SLURM started several tasks in this step but MPI gave this one a
    world of its own (``srun --mpi=none``, or a PMI the MPI does not speak), else None."""
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1)
    if tasks <= 1 or world_size != 1:
        return None
    return (f"SLURM started {tasks} tasks, but MPI sees a world of 1 in each: every task would "
            f"train its own copy. srun must start them through a PMI your MPI speaks: "
            f"'srun --mpi=pmi2' for MPICH, 'srun --mpi=pmix' for Open MPI "
            f"('srun --mpi=list' shows what this Slurm offers), or use "
            f"'mpirun -n {tasks}' inside the allocation")


def _ranges(ranks: list[int]) -> str:
    out, start = [], None
    for i, r in enumerate(ranks):
        if start is None:
            start = r
        if i + 1 == len(ranks) or ranks[i + 1] != r + 1:
            out.append(str(start) if start == r else f"{start}-{r}")
            start = None
    return ",".join(out)


def describe_placement(nodes: list[str], is_learner) -> str:
    """'node1: learners 0, actors 2-3; node2: learners 1, actors 4-5' from each rank's node."""
    parts = []
    for node in dict.fromkeys(nodes):
        ranks = [r for r, n in enumerate(nodes) if n == node]
        learners = [r for r in ranks if is_learner(r)]
        actors = [r for r in ranks if not is_learner(r)]
        roles = ([f"learner{'s' if len(learners) > 1 else ''} {_ranges(learners)}"] if learners
                 else []) + ([f"actor{'s' if len(actors) > 1 else ''} {_ranges(actors)}"]
                             if actors else [])
        parts.append(f"{node}: {', '.join(roles)}")
    return "; ".join(parts)
