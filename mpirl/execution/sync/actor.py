"""The actor loop: receive a command (and weights) from the learner, collect one message of
experience with the algorithm's collector, send it, repeat."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.execution.checkpointing import Checkpointer, restore_process_rng_state
from mpirl.execution.setup import RunSetup
from mpirl.execution.sync.protocol import (CONTROL_SIZE, CONTROL_TAG, CUT_TAG, MESSAGE_TAG, SAVE,
                                           STOP, WEIGHTS_TAG)
from mpirl.runtime import signals, timing
from mpirl.runtime.faults import Faults, poison_rewards


def run_actor(setup: RunSetup, comms: comm.RoleComms, checkpointer: Checkpointer,
              resume: dict | None = None) -> int:
    """Serve this rank's learner until it says stop; returns the exit code it sends.

    The long wait is for the small control message; the weights are then awaited with a
    fast-polling wait, so a large message's transfer steps do not each pay a long sleep.
    Messages carry any stop signal this rank received, for the learners to act on.
    """
    rank = comms.rank
    learner = setup.layout.learner_of(rank)
    model, weights = setup.actor_policy()  # weights are received straight into the policy
    control = np.zeros(CONTROL_SIZE, dtype=np.float64)
    collector = setup.make_collector(model, rank, resume)
    if resume and resume.get("own"):
        restore_process_rng_state(resume["own"]["rng"])
    message = setup.make_message()
    faults = Faults(rank)
    faults.slow_down(collector.envs)
    cut_note = np.zeros(1, dtype=np.float64)

    def cut() -> bool:
        """Whether the learner has cut the rollout being collected (--straggler-cutoff)."""
        while (req := comm.irecv_arrived(comms.group, cut_note, 0, tag=CUT_TAG)) is not None:
            comm.wait(req, what="a cut from its learner", peers=[learner])
            if cut_note[0] == control[4]:
                return True  # (an older number: a cut that crossed a finished rollout)
        return False

    cutting = "length" in message.views
    incoming = None
    update = 0
    timing.clock().reset()
    while True:
        if incoming is None:
            incoming = comm.irecv_all(comms.group, [weights], [0], tag=WEIGHTS_TAG)
        timing.switch("wait_weights")
        comm.recv(comms.group, control, source=0, tag=CONTROL_TAG,
                  what="the next command from its learner", peer=learner, patience=comm.ON_LEAD)
        if control[0] == SAVE:
            timing.switch("checkpoint")
            checkpointer.save({"role": "actor", "collector": collector.state_dict()})
            continue
        if control[2]:
            comm.wait(incoming, what="weights from its learner", peers=[learner],
                      patience=comm.ON_LEAD)
            incoming = None
        if control[0] == STOP:
            break
        poison = faults.strike(update) == "nan"
        if cutting:
            collector.collect(message, control[3], cut=cut)
        else:
            collector.collect(message, control[3])
        if poison:
            poison_rewards(message)
        message["requests"][0] = signals.requested()
        timing.switch("send")
        timing.clock().snapshot(message["timing"])
        comm.send(comms.group, message.buffer, dest=0, tag=MESSAGE_TAG,
                  what="its learner to take a rollout", peer=learner, patience=comm.ON_LEAD)
        update += 1
    collector.envs.close()
    if cutting:
        cut()  # take in a cut that crossed the last rollout
    return int(control[1])
