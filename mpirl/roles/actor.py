"""The actor loop: receive weights from the learner, collect a rollout, send it, repeat."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.roles.setup import RunSetup

ROLLOUT_TAG = 11
WEIGHTS_TAG = 12
CONTROL_TAG = 13
RUN, STOP = 0.0, 1.0


def run_actor(setup: RunSetup, comms: comm.RoleComms) -> None:
    """Serve this rank's learner until it says stop.

    Each round the learner sends a one-value control message (RUN or STOP), then the weights.
    The long wait is for the small control message; the weights are then awaited with a fresh,
    fast-polling wait, so a large message's transfer steps do not each pay a long sleep.
    """
    model = setup.make_model("cpu")
    weights = comm.FlatParameters(model).vector.numpy()  # received straight into the model
    control = np.zeros(1, dtype=np.float64)
    envs = setup.make_envs(comms.rank)
    collector = setup.make_collector(model, envs, comms.rank)
    rollout = setup.make_rollout_buffer()
    while True:
        incoming = comm.irecv_all(comms.group, [weights], [0], tag=WEIGHTS_TAG)
        comm.recv(comms.group, control, source=0, tag=CONTROL_TAG)
        comm.wait(incoming)
        if control[0] == STOP:
            break
        collector.collect(rollout)
        comm.send(comms.group, rollout.buffer, dest=0, tag=ROLLOUT_TAG)
    envs.close()
