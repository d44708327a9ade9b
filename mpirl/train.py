"""``python -m mpirl.train``: train an agent on all ranks of the MPI world; ``mpirl.train(...)``
does the same from Python (``from mpirl import train``: this module is callable, see ``train``).

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
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mpirl import comm
from mpirl.config.fields import ConfigError
from mpirl.config.schema import Config
from mpirl.config.sources import (config_from_values, given_values, parse_config,
                                  refuse_other_algorithms, values_given_in_code)
from mpirl.execution.checkpointing import Checkpointer
from mpirl.execution.setup import RunSetup
from mpirl.files.atomic import DiskFull
from mpirl.files.resume import load_for_resume, rank_parts, relayout_note, same_layout
from mpirl.files.rundir import RunDir
from mpirl.acting.envs import is_image
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
    """Every rank agreed that the input is unusable (the message); rank 0 has reported it."""


def _settle(world, error: str | None) -> None:
    """Collective: raise _BadInput on every rank if any rank had an error (printed once)."""
    error = _agree(world, error)
    if error:
        if world.Get_rank() == 0:
            print(f"mpirl: error: {error}", file=sys.stderr, flush=True)
        raise _BadInput(error)


class _Request:
    """What the user asked for: command-line arguments, or field values given in code."""

    def __init__(self, argv: list[str] | None = None, values: dict | None = None):
        self.argv, self.values = argv, values

    def config(self, world) -> Config:
        if self.values is not None:
            return config_from_values(self.values)
        argv = self.argv
        quiet_help = world.Get_rank() != 0 and bool({"-h", "--help", "--version"} & set(argv))
        with contextlib.redirect_stdout(io.StringIO()) if quiet_help else \
                contextlib.nullcontext():
            return parse_config(argv)

    def given(self) -> dict:
        return dict(self.values) if self.values is not None else given_values(self.argv)

    def refuse_other_algorithms(self) -> None:
        if self.values is not None:
            config_from_values({k: v for k, v in self.values.items() if k != "auto_resume"})
        else:
            refuse_other_algorithms(self.argv)


def _prepare(world, request: _Request):
    """Collective: the config, setup, run directory and (on resume) each rank's part of the
    checkpoint. Raises _BadInput after reporting bad input once."""
    rank = world.Get_rank()
    cfg = error = None
    try:
        cfg = request.config(world)
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
            request.refuse_other_algorithms()
        except ConfigError as e:
            error = str(e)
        _settle(world, error)
    if resume_dir:
        if rank == 0:
            try:
                given = dict(request.given(), resume=resume_dir)
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
    twin = None
    if rank == 0:
        try:
            twin = setup.acting_twin()
        except ConfigError as e:
            error = str(e)
    _settle(world, error)
    setup.acting = comm.broadcast_object(world, twin)

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
    if rank == 0:
        for note in notes + setup.notes:
            print(f"mpirl: {note}", file=sys.stderr, flush=True)
    resume = comm.scatter_objects(world, parts) if cfg.resume else None
    return cfg, setup, run_dir, resume


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: returns the exit code (the same on every rank)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(_Request(argv=argv))[0]
    except _BadInput:
        return exit_codes.BAD_INPUT
    except SystemExit as e:  # --help
        return int(e.code or 0)


class RunStopped(RuntimeError):
    """A run that ``train`` started ended before its budget: stopped by a signal after a
    checkpoint (``exit_code`` 3: continue it with ``train(resume=run_dir)``) or by a
    non-finite loss (4)."""

    def __init__(self, exit_code: int, run_dir: Path):
        what = "stopped by a signal" if exit_code == exit_codes.PREEMPTED else \
            "stopped by a non-finite loss or gradient"
        super().__init__(f"the run in {run_dir} {what} (exit code {exit_code})")
        self.exit_code, self.run_dir = exit_code, run_dir


def train(config: Mapping[str, Any] | str | os.PathLike | None = None, *,
          env: Callable[..., Any] | None = None, **fields: Any) -> Path:
    """Train on every rank of the MPI world, as ``python -m mpirl.train`` does; returns the run
    directory. Call it on every rank (a script launched with ``mpirun -n K python
    script.py``), or in one process alone.

    ``config``: field values (the keys of a config file, e.g. ``{"algo": "ppo", "env":
    "CartPole-v1"}``) or the path of a YAML or TOML config file; ``fields`` (e.g.
    ``total_steps=50_000``) override it. ``env``: a function that returns a Gymnasium env,
    called with ``env_kwargs`` on every rank for every env the run makes; the run records it
    as ``--env module:name`` (importable, that name also serves ``mpirl.evaluate``).

    Raises ``ConfigError`` (on every rank, with the message the command line prints) for bad
    input and ``RunStopped`` when the run ends early; a rank that fails aborts the job, as on
    the command line.
    """
    values = dict(config) if isinstance(config, Mapping) else \
        ({} if config is None else {"config": str(config)})
    values.update(fields)
    if env is not None:
        name = values.setdefault("env", f"{env.__module__}:{env.__qualname__}")
        from mpirl.acting.envs import register_factory
        register_factory(str(name), env)
    try:
        code, run_dir = _run(_Request(values=values_given_in_code(values)))
    except _BadInput as e:
        raise ConfigError(str(e)) from None
    if code != exit_codes.DONE:
        raise RunStopped(code, run_dir)
    return run_dir


def _run(request: _Request) -> tuple[int, Path | None]:
    """Run what ``request`` asks for on this rank: (exit code, run directory). Raises
    _BadInput (reported) on bad input."""
    signals.install()
    world = comm.world()
    rank = world.Get_rank()
    launch_error = slurm.singleton_launch(world.Get_size())
    if launch_error:  # each task is alone: only the first one speaks
        if os.environ.get("SLURM_PROCID", "0") == "0":
            print(f"mpirl: error: {launch_error}", file=sys.stderr, flush=True)
        raise _BadInput(launch_error)
    cfg, setup, run_dir, resume = _prepare(world, request)

    _, local_size = comm.node_local(world)
    limit_threads(cpu_share(local_size, cfg.torch_threads, images=is_image(setup.spec)))
    comm.set_comm_timeout(cfg.comm_timeout)
    timing.configure(cfg.timing)

    # Every rank that computes in torch imports it (seconds) before the collectives below,
    # so that all start their part at about the same time: the lead has imported it already
    # (for the acting twin), and a peer still importing would count against --comm-timeout.
    if setup.layout.is_learner(rank) or setup.acting is None:
        import torch  # noqa: F401
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
        return exit_codes.FAILED, run_dir.path  # not reached: abort ends the process
    except Exception as e:  # end every rank now rather than leave peers waiting forever
        # one write, summary line first: the abort may cut off whatever comes after
        sys.stderr.write(f"mpirl: rank {rank} ({comms.role}) failed: {type(e).__name__}: {e}; "
                         f"aborting the job\n{traceback.format_exc()}")
        comm.abort(world, exit_codes.FAILED)
        return exit_codes.FAILED, run_dir.path  # not reached: abort ends the process
    return code, run_dir.path


class _CallableModule(types.ModuleType):
    """``from mpirl import train`` gives this module: calling it calls ``train``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
