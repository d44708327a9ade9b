"""Synchronous learners and actors: learners average gradients with one allreduce per update
and send fresh weights to the actors that feed them (A2C, PPO, DQN).

``learner`` owns the learner loop, ``sources`` where its experience comes from (its actor
ranks, or its own envs), ``actor`` the actor loop, ``protocol`` the messages between them.
"""
from __future__ import annotations

from mpirl.runtime import slurm


def describe(setup, run_dir, nodes: list[str], actors: str = "actor(s)",
             work: str = "") -> list[str]:
    """The start-up lines: the layout, where ranks run, and the algorithm's own lines.
    ``actors`` names the actors; ``work`` says what one update trains on."""
    cfg, lay = setup.cfg, setup.layout
    roles = (f"{lay.learners} learner(s) acting on their own envs" if lay.self_acting else
             f"{lay.learners} learner(s), {lay.actors} {actors}")
    work = work or (f"{cfg.envs_per_actor} envs x {cfg.n_steps} steps per actor, "
                    f"{setup.steps_per_iteration} env steps per update")
    return [f"mpirl: {cfg.algo} on {cfg.env}: {lay.size} rank(s): {roles}; {work}, "
            f"{setup.iterations} updates; model {setup.n_params:,} parameters; run dir "
            f"{run_dir.path}",
            f"mpirl: placement: {slurm.describe_placement(nodes, lay.is_learner)}",
            *setup.algorithm.startup(setup)]


def run(setup, comms, run_dir, checkpointer, resume) -> int:
    """This rank's part of the run; returns its exit code (the same on every rank)."""
    if setup.layout.is_learner(comms.rank):
        from mpirl.execution.sync.learner import Learner
        return Learner(setup, comms, run_dir, checkpointer, resume).run()
    from mpirl.execution.sync.actor import run_actor
    return run_actor(setup, comms, checkpointer, resume)
