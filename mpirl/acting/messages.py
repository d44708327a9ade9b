"""The messages acting ranks send: several named arrays of mixed dtypes packed into one
preallocated byte buffer, so an actor sends a whole rollout as one MPI message through the
buffer interface.

An algorithm declares its experience fields (``rollout_fields``, ``transition_fields`` or its
own); every message also carries the report fields (``report_fields``), which the execution
model fills: finished episodes, a stop request, the sender's time breakdown.
"""
from __future__ import annotations

import numpy as np

from mpirl.acting.envs import EnvSpec
from mpirl.runtime.timing import CATEGORIES

_ALIGN = 16

# name -> (shape, dtype) of each array of a message
Fields = dict[str, tuple[tuple[int, ...], np.dtype]]


class PackedArrays:
    """Named numpy views into one contiguous uint8 ``buffer``.

    ``fields`` maps a name to (shape, dtype); two instances made from the same fields have the
    same byte layout, so one's ``buffer`` can be received straight into the other's.
    """

    def __init__(self, fields: Fields):
        self.fields = fields
        offsets, offset = {}, 0
        for name, (shape, dtype) in fields.items():
            offsets[name] = offset
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            offset += -(-nbytes // _ALIGN) * _ALIGN
        self.buffer = np.zeros(offset, dtype=np.uint8)
        self.views: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in fields.items():
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            raw = self.buffer[offsets[name]:offsets[name] + n]
            self.views[name] = raw.view(dtype).reshape(shape)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]


# Episode statistics slots: finished episodes, sum of their returns, sum of their lengths.
EPISODE_STATS = 3


def report_fields() -> Fields:
    """What every acting rank's message carries besides its experience."""
    return {
        "episodes": ((EPISODE_STATS,), np.dtype(np.float64)),
        # a stop signal the sender received (0 = none): how actors ask the learners to stop
        "requests": ((1,), np.dtype(np.float64)),
        # the sender's seconds per activity so far (mpirl.runtime.timing), for the time breakdown
        "timing": ((len(CATEGORIES),), np.dtype(np.float64)),
    }


# What an on-policy update reads from a rollout.
ON_POLICY_KEYS = ("obs", "actions", "rewards", "dones", "bootstrap")


def rollout_fields(spec: EnvSpec, n_steps: int, n_envs: int, logp: bool = False,
                   cut: bool = False) -> Fields:
    """The arrays of one on-policy rollout of ``n_steps`` steps from ``n_envs`` envs.
    ``logp`` adds the behaviour policy's log-probability of each action taken, for learners
    that train on rollouts of older weights; ``cut`` the number of steps collected, for
    rollouts that may be cut short (their observation after the last step follows it)."""
    T, N = n_steps, n_envs
    fields = {
        "obs": ((T + 1, N, *spec.obs_shape), spec.obs_dtype),
        "actions": ((T, N, *spec.action_shape), spec.action_dtype),
        "rewards": ((T, N), np.dtype(np.float32)),
        "dones": ((T, N), np.dtype(np.float32)),
        # gamma x V(final observation) where an episode was cut off by a time limit, else 0:
        # kept apart from the rewards so that learners can scale rewards without scaling it
        "bootstrap": ((T, N), np.dtype(np.float32)),
    }
    if logp:
        fields["logp"] = ((T, N), np.dtype(np.float32))
    if cut:  # the steps actually collected, of the T (--straggler-cutoff)
        fields["length"] = ((1,), np.dtype(np.int64))
    return fields


def transition_fields(spec: EnvSpec, n_steps: int, n_envs: int) -> Fields:
    """The arrays of one chunk of off-policy experience: ``n_steps`` rows from ``n_envs`` envs,
    laid out as the rows of a replay shard (see ``mpirl.replay.shard``)."""
    T, N = n_steps, n_envs
    return {
        "obs": ((T, N, *spec.obs_shape), spec.obs_dtype),
        "actions": ((T, N, *spec.action_shape), spec.action_dtype),
        "rewards": ((T, N), np.dtype(np.float32)),
        "flags": ((T, N), np.dtype(np.uint8)),
    }
