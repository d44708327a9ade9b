"""The target network's action values of every stored observation, cached between copies.

Every DQN target reads Q_target(s', .) of a minibatch's next observations: a function of the
observation and of the target network, which changes only every --target-update updates.
Between two copies a learner draws ``target_update x batch`` samples; while its shard holds no
more observations than that, valuing all of them once per copy (one large product, the fast
kind) costs less than valuing every minibatch's next observations, and rows that arrive in
between are valued as they are written. Once the shard holds more, the learner values each
minibatch as before: the cache is never the slower way. (Double DQN still runs the online
network on the next observations: it changes every update.)

The values are the ones a minibatch's forward pass gives, to the rounding of a product with a
different number of rows. Checkpoints with the replay hold them, so a resumed run goes on with
the very same numbers.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["TargetValues"]

# The rows of one forward pass when valuing the shard hold at most this many elements in the
# widest activation (1 MiB of float32): larger passes allocate and fault in fresh pages for
# every activation (16,000 rows through 256 units took 2.4x as long in one pass as in passes
# of 1,024 rows)
CHUNK_ELEMENTS = 1 << 18


class TargetValues:
    """Q_target(s, .) for every cell of ``replay`` (a ``ReplayShard``), valid while ``active``.
    Call ``refresh`` whenever the target network changes and ``added`` after each write to the
    replay."""

    def __init__(self, replay, target: torch.nn.Module, n_actions: int, samples_per_copy: int):
        self.replay, self.target = replay, target
        self.device = next(target.parameters()).device
        # active only while the stored cells [0, stored) number at most samples_per_copy
        self.values = np.zeros((min(replay.capacity, samples_per_copy), n_actions),
                               dtype=np.float32)
        self.active = False
        widest = max([int(np.prod(replay.obs.shape[2:]))]
                     + [p.shape[0] for p in target.parameters() if p.dim() == 1])
        self.chunk = max(64, CHUNK_ELEMENTS // widest)

    def _value(self, cells: np.ndarray) -> None:
        obs = self.replay.obs.reshape(self.replay.capacity, *self.replay.obs.shape[2:])
        with torch.no_grad():
            for start in range(0, cells.size, self.chunk):
                part = cells[start:start + self.chunk]
                x = torch.from_numpy(obs[part]).to(self.device)
                self.values[part] = self.target(x).cpu().numpy()

    def refresh(self) -> None:
        """The target network changed: value every stored observation afresh, if that is
        cheaper than valuing the minibatches until the next copy; else stop caching."""
        stored = self.replay.size()  # the cells [0, stored) of the ring are written
        self.active = stored <= len(self.values)
        if self.active and stored:
            self._value(np.arange(stored))

    def added(self, rows: int) -> None:
        """The replay's newest ``rows`` rows were just written."""
        if not self.active:
            return
        shard = self.replay
        if shard.size() > len(self.values):  # outgrown between two copies
            self.active = False
            return
        ring = (shard.written - rows + np.arange(rows)) % shard.rows
        self._value((ring[:, None] * shard.streams + np.arange(shard.streams)).ravel())

    def lookup(self, next_cells: np.ndarray | None) -> np.ndarray | None:
        """Q_target(s', .) of a minibatch's next observations, or None when not cached."""
        if not self.active or next_cells is None:
            return None
        return self.values[next_cells]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        stored = self.replay.size() if self.active else 0
        return {"active": self.active, "values": self.values[:stored].copy()}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore saved values, or (``state`` None, as after a checkpoint without them) value
        the shard afresh."""
        if (state is None or not state["active"]
                or state["values"].shape != (self.replay.size(), self.values.shape[1])):
            self.refresh()
            return
        self.active = True
        self.values[:len(state["values"])] = state["values"]
