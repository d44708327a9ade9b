"""A sum tree over non-negative priorities, for proportional prioritized replay (Schaul et al.
2016, arXiv:1511.05952), with batch updates and batch sampling in vectorized numpy.

The tree is one float64 array of ``2 * leaves`` entries (``leaves`` a power of two): entry 1 is
the root, entry ``i`` has children ``2i`` and ``2i + 1``, and leaf ``j`` lives at
``leaves + j``. A batch update writes the leaves and then recomputes each level's touched parents
in one numpy operation per level; sampling walks all draws down the tree together, one level at
a time. Either costs ``log2(leaves)`` numpy calls whatever the batch size.
"""
from __future__ import annotations

import numpy as np

from mpirl.runtime.memory import resident_zeros


class SumTree:
    """Priorities of ``capacity`` items; ``total`` is their sum."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.leaves = 1 << max(0, (capacity - 1).bit_length())
        self.depth = self.leaves.bit_length() - 1
        self.tree = resident_zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.tree[self.leaves + np.asarray(index)]

    def set(self, index: np.ndarray, priority: np.ndarray | float) -> None:
        """Set the priorities of items ``index`` (a repeated index keeps its last value)."""
        index = np.asarray(index, dtype=np.int64).ravel()
        if index.size == 0:
            return
        priority = np.broadcast_to(np.asarray(priority, dtype=np.float64), index.shape)
        if index.min() < 0 or index.max() >= self.capacity:
            raise IndexError(f"index out of range for a tree of {self.capacity} items")
        if not np.all(priority >= 0) or not np.all(np.isfinite(priority)):
            raise ValueError("priorities must be finite and >= 0")
        nodes = self.leaves + index
        self.tree[nodes] = priority
        tree = self.tree
        nodes = np.unique(nodes)  # sorted, so each level's parents dedupe without a sort
        for _ in range(self.depth):
            nodes = nodes >> 1
            if nodes.size > 1:
                nodes = nodes[np.concatenate(([True], nodes[1:] != nodes[:-1]))]
            tree[nodes] = tree[2 * nodes] + tree[2 * nodes + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each value in ``mass`` (in [0, total)), the item whose cumulative priority range
        holds it."""
        mass = np.array(mass, dtype=np.float64)
        nodes = np.ones(mass.shape, dtype=np.int64)
        tree = self.tree
        for _ in range(self.depth):
            left = tree[2 * nodes]
            right = mass >= left
            mass -= np.where(right, left, 0.0)
            nodes = 2 * nodes + right
        return nodes - self.leaves

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` items drawn with probability proportional to priority, stratified: the mass is
        cut into ``n`` equal segments and one draw is taken uniformly in each."""
        total = self.total
        if total <= 0:
            raise ValueError("cannot sample from a sum tree whose priorities are all zero")
        mass = (np.arange(n) + rng.random(n)) * (total / n)
        index = self.find(np.minimum(mass, np.nextafter(total, 0)))
        # rounding in the partial sums can land a draw on an empty leaf next to its segment:
        # draw those again (rare, and never more than a few rounds)
        for _ in range(32):
            empty = self.get(index) <= 0
            if not empty.any():
                return index
            index[empty] = self.find(rng.random(int(empty.sum())) * total)
        raise RuntimeError("sum tree sampling kept landing on zero-priority items")
