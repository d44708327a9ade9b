"""Asynchronous actors, synchronous learners (IMPALA's arrangement, Espeholt et al. 2018):
actors act without waiting and stream fixed-length unrolls to their learner; each learner
trains on --batch-unrolls of whatever has arrived, and learners average gradients with one
allreduce per update, so they stay identical while their actors run freely.

The learner loop is the synchronous one (``mpirl.execution.sync.learner``) with another
experience source (``source``); ``actor`` owns the actor loop, ``protocol`` the messages.
Unlike synchronous runs, a resumed run does not repeat the uninterrupted one exactly: the
order in which unrolls arrive varies from run to run.
"""
from __future__ import annotations

from mpirl.execution import sync

def describe(setup, run_dir, nodes: list[str]) -> list[str]:
    """The start-up lines, as synchronous runs have them."""
    cfg = setup.cfg
    return sync.describe(setup, run_dir, nodes, actors="asynchronous actor(s)", work=(
        f"{cfg.envs_per_actor} envs x {cfg.n_steps} steps per unroll, {cfg.batch_unrolls} "
        f"unrolls per learner per update ({setup.steps_per_iteration} env steps)"))


def run(setup, comms, run_dir, checkpointer, resume) -> int:
    """This rank's part of the run; returns its exit code (the same on every rank)."""
    if setup.layout.is_learner(comms.rank):
        from mpirl.execution.streaming.learner import StreamingLearner
        return StreamingLearner(setup, comms, run_dir, checkpointer, resume).run()
    from mpirl.execution.streaming.actor import run_actor
    return run_actor(setup, comms, checkpointer, resume)
