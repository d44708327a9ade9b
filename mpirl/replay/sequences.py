"""A learner's replay of fixed-length sequences for recurrent Q-learning (R2D2).

Steps are stored once, as in ``ReplayShard``: one ring of ``rows`` steps per env stream, each
step with its observation, action, reward, flags, whether it starts an episode (``firsts``),
the recurrent state the actor had before it, and the actor's Q-values of it (the action taken
and the best one, for initial priorities). A sequence is a slot of ``length`` steps starting
at a multiple of ``stride`` in a stream (``stride`` = --seq-len - --seq-overlap), plus the
``extra`` steps after it that its last targets bootstrap from. A slot can be sampled once all
its steps are written and until the ring overwrites its first step.

Slots are drawn in proportion to their priority (a sum tree; all alike without
prioritization). A new slot's priority comes from ``initial_priority`` (computed from the
actors' Q-values); after training on it, from the learner's TD errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mpirl.replay.sumtree import SumTree
from mpirl.runtime.memory import resident_zeros

FIELDS = ("obs", "actions", "rewards", "flags", "firsts", "states", "q_taken", "q_max")


@dataclass
class SequenceSample:
    cells: np.ndarray                    # where they live, for priority updates
    sequences: dict[str, np.ndarray]     # ``SequenceReplay.read``'s arrays
    weights: np.ndarray | None           # importance weights (None: drawn uniformly)


class SequenceReplay:
    def __init__(self, rows: int, streams: int, obs_shape, obs_dtype, state_size: int,
                 length: int, stride: int, extra: int,
                 initial_priority: Callable[[dict[str, np.ndarray]], np.ndarray],
                 alpha: float | None = None):
        """``alpha``: the priority exponent of prioritized sampling; None samples uniformly.
        ``rows`` must be a multiple of ``stride`` and hold a slot and the steps after it."""
        if rows % stride or rows < length + extra + stride:
            raise ValueError(f"a sequence replay of {rows} rows per stream must be a multiple of "
                             f"{stride} and at least {length + extra + stride}")
        self.rows, self.streams = rows, streams
        self.length, self.stride, self.extra = length, stride, extra
        self.span = length + extra   # steps read per sequence
        self.initial_priority, self.alpha = initial_priority, alpha
        self.obs = resident_zeros((rows, streams, *obs_shape), obs_dtype)
        self.actions = resident_zeros((rows, streams), np.int64)
        self.rewards = resident_zeros((rows, streams), np.float32)
        self.flags = resident_zeros((rows, streams), np.uint8)
        self.firsts = resident_zeros((rows, streams), np.uint8)
        self.states = resident_zeros((rows, streams, 2, state_size), np.float32)
        self.q_taken = resident_zeros((rows, streams), np.float32)
        self.q_max = resident_zeros((rows, streams), np.float32)
        self.slots = rows // stride
        self.tree = SumTree(self.slots * streams)
        self.written = 0
        self.max_priority = 1.0

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in FIELDS) + self.tree.tree.nbytes

    @staticmethod
    def estimate_nbytes(rows: int, streams: int, obs_shape, obs_dtype, state_size: int,
                        stride: int) -> int:
        per_step = (int(np.prod(obs_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
                    + 8 + 4 + 1 + 1 + 8 * state_size + 4 + 4)
        slots = rows // stride * streams
        return rows * streams * per_step + 2 * 8 * (1 << max(0, (slots - 1).bit_length()))

    def fill(self) -> float:
        return min(self.written, self.rows) / self.rows

    def can_sample(self) -> bool:
        return self.tree.total > 0

    # ------------------------------------------------------------------ writing
    def add(self, chunk: dict[str, np.ndarray]) -> None:
        """Append ``T`` steps: ``chunk[name]`` of shape (T, streams, ...) for every field."""
        T = chunk["rewards"].shape[0]
        before, after = self.written, self.written + T
        # slots whose first step the ring now overwrites can no longer be drawn
        gone = np.arange(-(-(before - self.rows) // self.stride) * self.stride,
                         after - self.rows, self.stride)
        self._set(gone[gone >= 0], None)
        rows = np.arange(before, after) % self.rows
        for name in FIELDS:
            getattr(self, name)[rows] = chunk[name]
        self.written = after
        # slots whose last step (extra included) is now written can be drawn
        starts = np.arange(-(-(before - self.span + 1) // self.stride) * self.stride,
                           after - self.span + 1, self.stride)
        starts = starts[starts >= max(0, after - self.rows)]
        if starts.size:
            self._set(starts, self.initial_priority(self.read(np.repeat(
                starts, self.streams), np.tile(np.arange(self.streams), starts.size))))

    def _cells(self, starts: np.ndarray) -> np.ndarray:
        slots = (starts // self.stride) % self.slots
        return (slots[:, None] * self.streams + np.arange(self.streams)).ravel()

    def _set(self, starts: np.ndarray, priorities: np.ndarray | None) -> None:
        if starts.size == 0:
            return
        if priorities is None:
            self.tree.set(self._cells(starts), 0.0)
            return
        self.tree.set(self._cells(starts), self._scaled(priorities))

    def _scaled(self, priorities: np.ndarray) -> np.ndarray:
        if self.alpha is None:
            return np.ones(len(priorities))
        p = (np.abs(priorities).astype(np.float64) + 1e-6) ** self.alpha
        self.max_priority = max(self.max_priority, float(p.max()))
        return p

    # ------------------------------------------------------------------ reading
    def read(self, starts: np.ndarray, streams: np.ndarray) -> dict[str, np.ndarray]:
        """Sequences starting at absolute steps ``starts`` of ``streams``: (B, span, ...)
        arrays, and ``state`` (B, 2, size), the state before each sequence's first step."""
        rows = (starts[:, None] + np.arange(self.span)) % self.rows
        cols = streams[:, None]
        out = {name: getattr(self, name)[rows, cols] for name in FIELDS
               if name not in ("states", "q_taken", "q_max")}
        out["state"] = self.states[rows[:, 0], streams]
        out["q_taken"], out["q_max"] = self.q_taken[rows, cols], self.q_max[rows, cols]
        return out

    def sample(self, batch: int, rng: np.random.Generator, beta: float) -> SequenceSample:
        """``batch`` sequences drawn by priority, with their importance weights (None when
        uniform)."""
        cells = self.tree.sample(batch, rng)
        slot, stream = cells // self.streams, cells % self.streams
        # the absolute start of each slot: the newest step written at that slot position
        newest = self.written - self.span
        starts = newest - ((newest - slot * self.stride) % self.rows)
        weights = None
        if self.alpha is not None:
            probs = self.tree.get(cells) / self.tree.total
            w = (int((self.tree.tree[self.tree.leaves:] > 0).sum()) * probs) ** -beta
            weights = (w / w.max()).astype(np.float32)
        return SequenceSample(cells, self.read(starts, stream), weights)

    def update_priorities(self, cells: np.ndarray, priorities: np.ndarray) -> None:
        if self.alpha is None:
            return
        p = self._scaled(priorities)
        fresh = self.tree.get(cells) > 0  # a slot overwritten since it was drawn stays out
        self.tree.set(cells[fresh], p[fresh])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        n = min(self.written, self.rows)
        state = {name: getattr(self, name)[:n].copy() for name in FIELDS}
        state.update(rows=self.rows, streams=self.streams, written=self.written,
                     max_priority=self.max_priority,
                     priorities=self.tree.get(np.arange(self.slots * self.streams)))
        return state

    def load_state_dict(self, state: dict) -> None:
        if (state["rows"], state["streams"]) != (self.rows, self.streams):
            raise ValueError(f"saved sequence replay is {state['rows']} x {state['streams']}, "
                             f"this one {self.rows} x {self.streams}")
        n = min(state["written"], self.rows)
        for name in FIELDS:
            getattr(self, name)[:n] = state[name]
        self.written, self.max_priority = state["written"], state["max_priority"]
        self.tree.set(np.arange(self.slots * self.streams), state["priorities"])
