"""The actor loop: receive weights from the learner, collect a rollout, send it, repeat."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.roles.setup import RunSetup

ROLLOUT_TAG = 11


def run_actor(setup: RunSetup, comms: comm.RoleComms) -> None:
    """Serve this rank's learner until it sends the stop flag with the weights."""
    model = setup.make_model("cpu")
    weights = np.zeros(setup.weights_size, dtype=np.float32)
    envs = setup.make_envs(comms.rank)
    collector = setup.make_collector(model, envs, comms.rank)
    rollout = setup.make_rollout_buffer()
    while True:
        comm.broadcast_(comms.group, weights, root=0)
        if weights[-1] != 0.0:  # stop flag
            break
        comm.numpy_to_parameters(weights[:-1], model)
        collector.collect(rollout)
        comm.send(comms.group, rollout.buffer, dest=0, tag=ROLLOUT_TAG)
    envs.close()
