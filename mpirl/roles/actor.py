"""The actor loop: receive weights from the learner, collect a rollout, send it, repeat."""
from __future__ import annotations

from mpirl import comm
from mpirl.roles.setup import RunSetup

ROLLOUT_TAG = 11
WEIGHTS_TAG = 12


def run_actor(setup: RunSetup, comms: comm.RoleComms) -> None:
    """Serve this rank's learner until it sends the stop flag with the weights."""
    model = setup.make_model("cpu")
    # the weights message lands directly in the model's parameters; its last slot is control
    weights = comm.FlatParameters(model, extra=1).buffer.numpy()
    envs = setup.make_envs(comms.rank)
    collector = setup.make_collector(model, envs, comms.rank)
    rollout = setup.make_rollout_buffer()
    while True:
        comm.recv(comms.group, weights, source=0, tag=WEIGHTS_TAG)
        if weights[-1] != 0.0:  # stop flag
            break
        collector.collect(rollout)
        comm.send(comms.group, rollout.buffer, dest=0, tag=ROLLOUT_TAG)
    envs.close()
