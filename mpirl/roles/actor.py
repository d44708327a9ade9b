"""The actor loop: receive weights from the learner, collect a rollout, send it, repeat."""
from __future__ import annotations

import numpy as np

from mpirl import comm, signals, timing
from mpirl.faults import Faults
from mpirl.roles.checkpointing import Checkpointer, restore_process_rng_state
from mpirl.roles.setup import RunSetup

ROLLOUT_TAG = 11
WEIGHTS_TAG = 12
CONTROL_TAG = 13
# Commands in the control message [command, exit code]. RUN and STOP are followed by weights;
# SAVE asks the actor to join a checkpoint, after which the same weights are still to come.
RUN, STOP, SAVE = 0.0, 1.0, 2.0


def run_actor(setup: RunSetup, comms: comm.RoleComms, checkpointer: Checkpointer,
              resume: dict | None = None) -> int:
    """Serve this rank's learner until it says stop; returns the exit code it sends.

    The long wait is for the small control message; the weights are then awaited with a
    fast-polling wait, so a large message's transfer steps do not each pay a long sleep.
    Rollouts carry any stop signal this rank received, for the learners to act on.
    """
    rank = comms.rank
    learner = setup.layout.learner_of(rank)
    model = setup.make_model("cpu")
    weights = comm.FlatParameters(model).vector.numpy()  # received straight into the model
    control = np.zeros(2, dtype=np.float64)
    collector = setup.make_collector(model, rank, resume)
    if resume and resume.get("own"):
        restore_process_rng_state(resume["own"]["rng"])
    rollout = setup.make_rollout_buffer()
    faults = Faults(rank)
    incoming = None
    update = 0
    timing.clock().reset()
    while True:
        if incoming is None:
            incoming = comm.irecv_all(comms.group, [weights], [0], tag=WEIGHTS_TAG)
        timing.switch("wait_weights")
        comm.recv(comms.group, control, source=0, tag=CONTROL_TAG,
                  what="the next command from its learner", peer=learner)
        if control[0] == SAVE:
            timing.switch("checkpoint")
            checkpointer.save({"role": "actor", "collector": collector.state_dict()})
            continue
        comm.wait(incoming, what="weights from its learner", peers=[learner])
        incoming = None
        if control[0] == STOP:
            break
        poison = faults.strike(update) == "nan"
        collector.collect(rollout)
        if poison:
            rollout["rewards"][:] = np.nan
        rollout["requests"][0] = signals.requested()
        timing.switch("send")
        timing.clock().snapshot(rollout["timing"])
        comm.send(comms.group, rollout.buffer, dest=0, tag=ROLLOUT_TAG,
                  what="its learner to take a rollout", peer=learner)
        update += 1
    collector.envs.close()
    return int(control[1])
