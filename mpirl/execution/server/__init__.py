"""Asynchronous workers and parameter servers (A3C).

Workers each step their own envs, compute a gradient of each message with the algorithm's
``Worker`` on their copy of the weights, push it to the servers (``mpirl.ps``) and continue
with the fresh weights that come back; no worker waits for another. The servers hold the
weights and the optimizer statistics and apply gradients in arrival order.

The first server (world rank 0) is the lead: it counts env steps from the workers' reports,
writes progress rows, asks a worker to evaluate now and then (reply slot ``EVALUATE``; the
result comes back in that worker's next report), and decides when the run ends (budget,
target return, stop signal, non-finite gradient). Workers learn of the end from the lead's
reply, say goodbye to every server, and the servers then assemble the final weights.

Modules: ``protocol`` (the report and reply slots of the messages), ``worker`` (messages and
gradients), ``lead`` (what the servers make of the reports: schedules, progress rows, the end
of the run) and ``server`` (a server rank's life: serve, checkpoint, finish).
"""
from __future__ import annotations

from mpirl.ps import shard_bounds


def describe(setup, run_dir, nodes: list[str]) -> list[str]:
    """The start-up lines: the layout and the slices of the weight vector."""
    lay, cfg = setup.layout, setup.cfg
    sizes = [hi - lo for lo, hi in shard_bounds(setup.n_params, lay.learners)]
    return [f"mpirl: {cfg.algo} on {cfg.env}: {lay.size} rank(s): {lay.learners} parameter "
            f"server(s), {lay.actors} worker(s); {cfg.envs_per_actor} envs x {cfg.n_steps} "
            f"steps per gradient; model {setup.n_params:,} parameters in slices of "
            f"{min(sizes):,}-{max(sizes):,}; max staleness {cfg.max_staleness or 'unlimited'}"
            f"; run dir {run_dir.path}", *setup.algorithm.startup(setup)]


def run(setup, comms, run_dir, checkpointer, resume) -> int:
    """This rank's part of the run; returns its exit code (the same on every rank)."""
    if setup.layout.is_learner(comms.rank):
        from mpirl.execution.server.server import run_server
        return run_server(setup, comms, run_dir, checkpointer, resume)
    from mpirl.execution.server.worker import run_worker
    return run_worker(setup, comms, checkpointer, resume)
