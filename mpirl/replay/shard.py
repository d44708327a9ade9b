"""One learner's replay shard: a preallocated ring of time steps x env streams.

Actors send chunks of ``T`` steps from each of their envs; a learner stacks its actors' chunks
side by side and writes them as ``T`` rows of the ring, one column ("stream") per env. Every
observation is stored once, in the env's dtype: the next observation of a transition is the
observation one row later in its stream. An episode cut off by a time limit is followed by a
*reset row* that holds the episode's final observation (for the bootstrap) and no transition.

n-step returns are computed at sampling time from the stored rewards and flags, vectorized over
the batch with one numpy step per ``j < n``. The newest ``n`` rows are not sampled: their
n-step windows are not complete yet.

With ``prioritized``, a ``SumTree`` holds each cell's priority (0 for reset rows and incomplete
windows); new transitions enter at the largest priority seen so far.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpirl.replay.sumtree import SumTree
from mpirl.runtime.memory import resident_zeros

# per-cell flag bits
VALID = 1        # the cell holds a transition (not a reset row)
TERMINATED = 2   # the episode terminated at this step: no bootstrap past it
ENDED = 4        # the episode ended here (terminated or truncated): the n-step window stops
STOPPED = ENDED | TERMINATED  # no bootstrap from this step's next observation


@dataclass(frozen=True)
class Prioritization:
    """Proportional prioritization: priority = (|TD error| + eps) ** alpha."""

    alpha: float = 0.6
    eps: float = 1e-6


@dataclass
class Sample:
    """A minibatch: n-step transitions and, with prioritization, their importance weights."""

    cells: np.ndarray        # where they live, for priority updates
    obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray      # discounted n-step reward sums, float32
    next_obs: np.ndarray     # the observation to bootstrap from
    discounts: np.ndarray    # gamma**k, or 0 where the episode terminated inside the window
    weights: np.ndarray      # importance-sampling weights (ones without prioritization)
    next_cells: np.ndarray | None = None  # where the next observations live


class ReplayShard:
    def __init__(self, rows: int, streams: int, obs_shape: tuple[int, ...], obs_dtype,
                 action_shape: tuple[int, ...], action_dtype, n_step: int, gamma: float,
                 prioritization: Prioritization | None = None):
        if rows <= n_step + 1:
            raise ValueError(f"a replay shard needs more than n_step + 1 = {n_step + 1} rows, "
                             f"got {rows}")
        self.rows, self.streams = rows, streams
        self.n_step, self.gamma = n_step, gamma
        self.obs = resident_zeros((rows, streams, *obs_shape), obs_dtype)
        self.actions = resident_zeros((rows, streams, *action_shape), action_dtype)
        self.rewards = resident_zeros((rows, streams), np.float32)
        self.flags = resident_zeros((rows, streams), np.uint8)
        self.written = 0  # rows written since the start (the newest is written - 1)
        self.prioritization = prioritization
        self.tree = SumTree(rows * streams) if prioritization else None
        self.max_priority = 1.0

    # ------------------------------------------------------------------ size
    @property
    def capacity(self) -> int:
        return self.rows * self.streams

    @property
    def nbytes(self) -> int:
        """Memory held, all of it allocated and resident from the start."""
        arrays = (self.obs, self.actions, self.rewards, self.flags)
        return sum(a.nbytes for a in arrays) + (self.tree.tree.nbytes if self.tree else 0)

    @staticmethod
    def estimate_nbytes(rows: int, streams: int, obs_shape, obs_dtype, action_shape,
                        action_dtype, prioritized: bool) -> int:
        cells = rows * streams
        per_cell = (int(np.prod(obs_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
                    + int(np.prod(action_shape, dtype=np.int64)) * np.dtype(action_dtype).itemsize
                    + 4 + 1)
        tree = 2 * 8 * (1 << max(0, (cells - 1).bit_length())) if prioritized else 0
        return cells * per_cell + tree

    def size(self) -> int:
        """Transitions stored (reset rows included)."""
        return min(self.written, self.rows) * self.streams

    def fill(self) -> float:
        return min(self.written, self.rows) / self.rows

    def _ready_rows(self) -> tuple[int, int]:
        """The absolute row numbers [first, last] whose n-step windows are complete."""
        return max(0, self.written - self.rows), self.written - 1 - self.n_step

    def can_sample(self) -> bool:
        first, last = self._ready_rows()
        if last < first:
            return False
        if self.tree is not None:
            return self.tree.total > 0
        return True

    # ------------------------------------------------------------------ writing
    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            flags: np.ndarray) -> None:
        """Append ``T`` rows: arrays of shape (T, streams, ...)."""
        T = rewards.shape[0]
        if T > self.rows:
            raise ValueError(f"a chunk of {T} rows does not fit a shard of {self.rows} rows")
        rows = (self.written + np.arange(T)) % self.rows
        self.obs[rows] = obs
        self.actions[rows] = actions
        self.rewards[rows] = rewards
        self.flags[rows] = flags
        if self.tree is not None:
            # the new rows are not sampleable yet; the rows whose windows they complete are
            self.tree.set(self._cells(rows), 0.0)
            done = np.arange(self.written - self.n_step, self.written + T - self.n_step)
            done = done[done >= max(0, self.written + T - self.rows)] % self.rows
            cells = self._cells(done)
            valid = (self.flags.reshape(-1)[cells] & VALID) > 0
            self.tree.set(cells, np.where(valid, self.max_priority, 0.0))
        self.written += T

    def _cells(self, rows: np.ndarray) -> np.ndarray:
        return (rows[:, None] * self.streams + np.arange(self.streams)).ravel()

    # ------------------------------------------------------------------ sampling
    def sample(self, batch: int, rng: np.random.Generator, beta: float = 1.0) -> Sample:
        if not self.can_sample():
            raise ValueError("the replay shard holds no complete transition yet")
        if self.tree is None:
            cells = self._sample_uniform(batch, rng)
            weights = np.ones(batch, dtype=np.float32)
        else:
            cells = self.tree.sample(batch, rng)
            probs = self.tree.get(cells) / self.tree.total
            n = self.size()
            w = (n * probs) ** -beta
            weights = (w / w.max()).astype(np.float32)
        return self._transitions(cells, weights)

    def _sample_uniform(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        first, last = self._ready_rows()
        flags = self.flags.reshape(-1)
        cells = np.empty(batch, dtype=np.int64)
        todo = np.arange(batch)
        for _ in range(64):  # reset rows are rare: redraw the few that hit one
            drawn = rng.integers(first, last + 1, todo.size) % self.rows
            if self.streams > 1:  # (one stream: no draw, as integers(0, 1) draws nothing)
                drawn = drawn * self.streams + rng.integers(0, self.streams, todo.size)
            cells[todo] = drawn
            todo = todo[(flags[drawn] & VALID) == 0]
            if todo.size == 0:
                return cells
        raise ValueError("the replay shard holds no valid transition to sample")

    def _transitions(self, cells: np.ndarray, weights: np.ndarray) -> Sample:
        # flat cell numbers throughout: one index array per gather, not a (row, stream) pair
        capacity, S = self.capacity, self.streams
        rewards, flags = self.rewards.reshape(-1), self.flags.reshape(-1)
        f = flags[cells]
        returns = rewards[cells]  # (a copy: fancy indexing)
        alive = (f & ENDED) == 0                     # the window has not hit an episode end
        steps = np.ones(cells.size, dtype=np.int64)  # steps summed so far
        bootstrap = (f & STOPPED) != STOPPED
        at = cells
        for j in range(1, self.n_step):
            at = (at + S) % capacity
            returns += np.where(alive, np.float32(self.gamma ** j) * rewards[at], 0)
            steps += alive
            f = flags[at]
            ends = alive & ((f & ENDED) > 0)
            bootstrap &= ~(ends & ((f & TERMINATED) > 0))
            alive &= ~ends
        nxt = (cells + steps * S) % capacity
        discounts = np.where(bootstrap, self.gamma ** steps, 0.0).astype(np.float32)
        obs = self.obs.reshape(capacity, *self.obs.shape[2:])
        actions = self.actions.reshape(capacity, *self.actions.shape[2:])
        return Sample(cells, obs[cells], actions[cells], returns, obs[nxt], discounts, weights,
                      nxt)

    def update_priorities(self, cells: np.ndarray, td_errors: np.ndarray) -> None:
        if self.tree is None:
            return
        p = (np.abs(td_errors).astype(np.float64) + self.prioritization.eps) \
            ** self.prioritization.alpha
        self.max_priority = max(self.max_priority, float(p.max()))
        # a cell overwritten since it was sampled keeps the priority its new content got
        fresh = self.tree.get(cells) > 0
        self.tree.set(cells[fresh], p[fresh])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        n = min(self.written, self.rows)
        state = {"rows": self.rows, "streams": self.streams, "written": self.written,
                 "obs": self.obs[:n].copy(), "actions": self.actions[:n].copy(),
                 "rewards": self.rewards[:n].copy(), "flags": self.flags[:n].copy(),
                 "max_priority": self.max_priority}
        if self.tree is not None:
            state["priorities"] = self.tree.get(np.arange(n * self.streams))
        return state

    def load_state_dict(self, state: dict) -> None:
        if (state["rows"], state["streams"]) != (self.rows, self.streams):
            raise ValueError(f"saved replay shard is {state['rows']} x {state['streams']}, "
                             f"this one {self.rows} x {self.streams}")
        n = min(state["written"], self.rows)
        self.obs[:n], self.actions[:n] = state["obs"], state["actions"]
        self.rewards[:n], self.flags[:n] = state["rewards"], state["flags"]
        self.written = state["written"]
        self.max_priority = state["max_priority"]
        if self.tree is not None:
            if "priorities" in state:
                self.tree.set(np.arange(n * self.streams), state["priorities"])
            else:  # saved without prioritization: every complete transition at priority 1
                first, last = self._ready_rows()
                rows = np.arange(first, last + 1) % self.rows
                cells = self._cells(rows)
                valid = (self.flags.reshape(-1)[cells] & VALID) > 0
                self.tree.set(cells, valid.astype(np.float64))
