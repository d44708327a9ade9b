"""``python -m mpirl.train``: train an agent on all ranks of the MPI world.

Launch with ``mpirun -n K python -m mpirl.train ...`` (or ``srun``); without a launcher the
single process acts and learns. Exit codes: 0 done, 2 bad input (every rank, before any
training), 1 a rank failed (the whole job is aborted).
"""
from __future__ import annotations

import contextlib
import io
import sys
import traceback
from typing import Sequence

from mpirl import comm
from mpirl.config import Config, ConfigError, parse_config
from mpirl.layout import plan_layout
from mpirl.roles.actor import run_actor
from mpirl.roles.learner import Learner
from mpirl.roles.setup import RunSetup
from mpirl.rundir import RunDir
from mpirl.threads import cpu_share, limit_threads

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _agree(world, error: str | None) -> str | None:
    """Collective: the error message to report (once, by rank 0) if any rank had one."""
    message, failing = comm.first_error(world, error)
    if message is None:
        return None
    size = world.Get_size()
    where = "" if len(failing) == size else f" (on rank{'s' if len(failing) > 1 else ''} " \
        f"{', '.join(map(str, failing))})"
    return message + where


def _prepare(world, argv: Sequence[str] | None) -> tuple[Config, RunSetup]:
    quiet_help = world.Get_rank() != 0 and argv is not None and ("-h" in argv or "--help" in argv)
    with contextlib.redirect_stdout(io.StringIO()) if quiet_help else contextlib.nullcontext():
        cfg = parse_config(argv)
    layout = plan_layout(world.Get_size(), cfg.learners)
    return cfg, RunSetup(cfg, layout)


def main(argv: Sequence[str] | None = None) -> int:
    world = comm.world()
    rank = world.Get_rank()
    argv = list(sys.argv[1:] if argv is None else argv)
    error = cfg = setup = None
    try:
        cfg, setup = _prepare(world, argv)
    except ConfigError as e:
        error = str(e)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    error = _agree(world, error)
    if error:
        if rank == 0:
            print(f"mpirl: error: {error}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT

    _, local_size = comm.node_local(world)
    limit_threads(cpu_share(local_size, cfg.torch_threads))

    run_dir = None
    error = None
    if rank == 0:
        try:
            run_dir = RunDir.create(cfg)
            run_dir.save_config(cfg)
        except OSError as e:
            error = f"cannot create the run directory: {e}"
    error = _agree(world, error)
    if error:
        if rank == 0:
            print(f"mpirl: error: {error}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    run_dir = RunDir(comm.broadcast_object(world, str(run_dir.path) if run_dir else None))

    comms = comm.split_roles(world, setup.layout)
    try:
        if rank == 0 and not cfg.quiet:
            _print_start(cfg, setup, run_dir)
        if setup.layout.is_learner(rank):
            Learner(setup, comms, run_dir).run()
        else:
            run_actor(setup, comms)
    except Exception as e:  # end every rank now rather than leave peers waiting forever
        # one write, summary line first: the abort may cut off whatever comes after
        sys.stderr.write(f"mpirl: rank {rank} ({comms.role}) failed: {type(e).__name__}: {e}; "
                         f"aborting the job\n{traceback.format_exc()}")
        comm.abort(world, EXIT_FAILED)
    comms.free()
    comm.barrier(world)  # wait quietly for the lead's final evaluation, not in MPI_Finalize
    return 0


def _print_start(cfg: Config, setup: RunSetup, run_dir: RunDir) -> None:
    lay = setup.layout
    roles = (f"{lay.learners} learner(s) acting on their own envs" if lay.self_acting else
             f"{lay.learners} learner(s), {lay.actors} actor(s)")
    print(f"mpirl: {cfg.algo} on {cfg.env}: {lay.size} rank(s): {roles}; "
          f"{cfg.envs_per_actor} envs x {cfg.n_steps} steps per actor, "
          f"{setup.steps_per_iteration} env steps per update, {setup.iterations} updates; "
          f"model {setup.n_params:,} parameters; "
          f"run dir {run_dir.path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
