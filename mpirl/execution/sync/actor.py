"""The actor loop: receive a command (and weights) from the learner, collect a rollout or a
chunk of replay rows, send it, repeat."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.runtime import signals, timing
from mpirl.runtime.faults import Faults
from mpirl.execution.checkpointing import Checkpointer, restore_process_rng_state
from mpirl.execution.setup import RunSetup

ROLLOUT_TAG = 11
WEIGHTS_TAG = 12
CONTROL_TAG = 13
# The control message: [command, exit code, weights follow (0/1), progress (fraction of the
# budget done)]. RUN asks for the next rollout or chunk; STOP is always followed by weights,
# RUN by weights when the learner has fresh ones to send; SAVE asks the actor to join a
# checkpoint, after which the next command is still to come.
RUN, STOP, SAVE = 0.0, 1.0, 2.0
CONTROL_SIZE = 4


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
    control = np.zeros(CONTROL_SIZE, dtype=np.float64)
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
        if control[2]:
            comm.wait(incoming, what="weights from its learner", peers=[learner])
            incoming = None
        if control[0] == STOP:
            break
        poison = faults.strike(update) == "nan"
        collector.collect(rollout, control[3])
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
