"""``python -m mpirl.train``: train an agent on all ranks of the MPI world.

Launch with ``mpirun -n K python -m mpirl.train ...`` (or ``srun``); without a launcher the
single process acts and learns. ``--resume RUN_DIR`` continues a run from its newest readable
checkpoint. Exit codes (the same on every rank) are in ``mpirl.runtime.exit_codes``: 0 done,
1 a rank failed and the job was aborted, 2 bad input, 3 stopped by a signal after a
checkpoint, 4 the loss became NaN/Inf.

The chosen algorithm (``mpirl.algos``) names its execution model (``mpirl.execution``), which
lays the ranks out and runs each rank's loop.
"""
from __future__ import annotations

from mpirl.runtime import signals

# First of all: the imports below take seconds (torch), and a stop signal in that time must
# still end the run at a checkpoint (exit 3, which mpirl.requeue requeues), not kill it.
signals.install()

import contextlib
import io
import os
import sys
import traceback
from typing import Sequence

from mpirl import comm
from mpirl.config.fields import ConfigError
from mpirl.config.schema import Config
from mpirl.config.sources import given_values, parse_config, refuse_other_algorithms
from mpirl.execution.checkpointing import Checkpointer
from mpirl.execution.setup import RunSetup
from mpirl.files.atomic import DiskFull
from mpirl.files.resume import load_for_resume, rank_parts, relayout_note, same_layout
from mpirl.files.rundir import RunDir
from mpirl.nets.actor_critic import is_image
from mpirl.runtime import exit_codes, slurm, timing
from mpirl.runtime.threads import cpu_share, limit_threads


def _agree(world, error: str | None) -> str | None:
    """Collective: the error message to report (once, by rank 0) if any rank had one."""
    message, failing = comm.first_error(world, error)
    if message is None:
        return None
    size = world.Get_size()
    where = "" if len(failing) == size else f" (on rank{'s' if len(failing) > 1 else ''} " \
        f"{', '.join(map(str, failing))})"
    return message + where


class _BadInput(Exception):
    """Every rank agreed that the input is unusable; rank 0 has reported it."""


def _settle(world, error: str | None) -> None:
    """Collective: raise _BadInput on every rank if any rank had an error (printed once)."""
    error = _agree(world, error)
    if error:
        if world.Get_rank() == 0:
            print(f"mpirl: error: {error}", file=sys.stderr, flush=True)
        raise _BadInput


def _parse(world, argv: list[str]) -> Config:
    quiet_help = world.Get_rank() != 0 and bool({"-h", "--help", "--version"} & set(argv))
    with contextlib.redirect_stdout(io.StringIO()) if quiet_help else contextlib.nullcontext():
        return parse_config(argv)


def _prepare(world, argv: list[str]):
    """Collective: the config, setup, run directory and (on resume) each rank's part of the
    checkpoint. Raises _BadInput after reporting bad input once."""
    rank = world.Get_rank()
    cfg = error = None
    try:
        cfg = _parse(world, argv)
    except ConfigError as e:
        error = str(e)
    _settle(world, error)

    ckpt = None
    notes: list[str] = []
    resume_dir = cfg.resume
    if cfg.auto_resume and not resume_dir and rank == 0:
        candidate = RunDir(RunDir.path_for(cfg))
        if candidate.checkpoints().paths():
            resume_dir = str(candidate.path)
    resume_dir = comm.broadcast_object(world, resume_dir)
    if cfg.auto_resume and not resume_dir:  # a new run after all: its options are checked
        try:
            refuse_other_algorithms(argv)
        except ConfigError as e:
            error = str(e)
        _settle(world, error)
    if resume_dir:
        if rank == 0:
            try:
                given = dict(given_values(argv), resume=resume_dir)
                cfg, ckpt, notes = load_for_resume(resume_dir, given)
            except ConfigError as e:
                error = str(e)
        _settle(world, error)
        cfg = comm.broadcast_object(world, cfg)

    setup = None
    try:
        setup = RunSetup(cfg, cfg.algorithm.execution.plan(cfg, world.Get_size()))
    except ConfigError as e:
        error = str(e)
    _settle(world, error)

    run_dir = None
    if rank == 0:
        try:
            run_dir = RunDir(cfg.resume) if cfg.resume else RunDir.create(cfg)
            run_dir.save_config(cfg)
            (run_dir.path / "summary.json").unlink(missing_ok=True)
        except ConfigError as e:
            error = str(e)
        except OSError as e:
            error = f"cannot write the run directory: {e}"
    _settle(world, error)
    run_dir = RunDir(comm.broadcast_object(world, str(run_dir.path) if run_dir else None))

    parts = None
    if rank == 0 and ckpt is not None:
        exact = same_layout(ckpt, cfg, setup.layout)
        if not exact:
            notes.append(relayout_note(ckpt, setup.layout))
        parts = rank_parts(ckpt, setup.layout, exact, ckpt.shared["counters"]["segment"] + 1)
        for note in notes:
            print(f"mpirl: {note}", file=sys.stderr, flush=True)
    resume = comm.scatter_objects(world, parts) if cfg.resume else None
    return cfg, setup, run_dir, resume


def main(argv: Sequence[str] | None = None) -> int:
    signals.install()
    world = comm.world()
    rank = world.Get_rank()
    argv = list(sys.argv[1:] if argv is None else argv)
    launch_error = slurm.singleton_launch(world.Get_size())
    if launch_error:  # each task is alone: only the first one speaks
        if os.environ.get("SLURM_PROCID", "0") == "0":
            print(f"mpirl: error: {launch_error}", file=sys.stderr, flush=True)
        return exit_codes.BAD_INPUT
    try:
        cfg, setup, run_dir, resume = _prepare(world, argv)
    except _BadInput:
        return exit_codes.BAD_INPUT
    except SystemExit as e:  # --help
        return int(e.code or 0)

    _, local_size = comm.node_local(world)
    limit_threads(cpu_share(local_size, cfg.torch_threads, images=is_image(setup.spec)))
    comm.set_comm_timeout(cfg.comm_timeout)
    timing.configure(cfg.timing)

    comms = comm.split_roles(world, setup.layout)
    checkpointer = Checkpointer(world, run_dir.checkpoints(cfg.keep_checkpoints))
    nodes = comm.gather_objects(world, slurm.node_name())
    execution = setup.algorithm.execution.module()
    try:
        if rank == 0 and not cfg.quiet:
            for line in execution.describe(setup, run_dir, nodes):
                print(line, flush=True)
        code = execution.run(setup, comms, run_dir, checkpointer, resume)
        comms.free()
        # wait quietly for the lead's final evaluation, not in MPI_Finalize
        comm.barrier(world, what="the lead learner to finish the run", patience=comm.ON_FINISH)
    except DiskFull as e:  # nothing more can be saved: say what is safe, and end every rank
        newest = run_dir.checkpoints().paths()
        sys.stderr.write(f"mpirl: error: {e}; training stopped. Newest good checkpoint: "
                         f"{newest[0] if newest else 'none yet'}. Free space, then continue "
                         f"with: python -m mpirl.train --resume {run_dir.path}\n")
        comm.abort(world, exit_codes.FAILED)
        return exit_codes.FAILED  # not reached: abort ends the process
    except Exception as e:  # end every rank now rather than leave peers waiting forever
        # one write, summary line first: the abort may cut off whatever comes after
        sys.stderr.write(f"mpirl: rank {rank} ({comms.role}) failed: {type(e).__name__}: {e}; "
                         f"aborting the job\n{traceback.format_exc()}")
        comm.abort(world, exit_codes.FAILED)
        return exit_codes.FAILED  # not reached: abort ends the process
    return code


if __name__ == "__main__":
    sys.exit(main())
