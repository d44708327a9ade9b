"""Running moments (count, mean, M2) of a stream of arrays, merged with the parallel variance
formula (Chan, Golub and LeVeque 1979), so statistics gathered on many ranks combine into
exactly those of one process that saw all the data."""
from __future__ import annotations

import numpy as np


class Moments:
    """Count, mean and sum of squared deviations from the mean (M2), per element of
    ``shape``, in float64."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.shape = tuple(shape)
        self.count = 0.0
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.m2 = np.zeros(self.shape, dtype=np.float64)

    @classmethod
    def of(cls, samples: np.ndarray, shape: tuple[int, ...] = ()) -> "Moments":
        """The moments of ``samples``, shaped (n, *shape)."""
        out = cls(shape)
        x = np.asarray(samples, dtype=np.float64).reshape((-1, *out.shape))
        out.count = float(x.shape[0])
        if out.count:
            out.mean = x.mean(axis=0)
            out.m2 = ((x - out.mean) ** 2).sum(axis=0)
        return out

    def merge(self, other: "Moments") -> "Moments":
        """Add ``other``'s samples to these moments, in place; returns self."""
        n = self.count + other.count
        if other.count == 0:
            return self
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / n)
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / n)
        self.count = n
        return self

    def decay_(self, factor: float) -> "Moments":
        """Weigh the samples seen so far ``factor`` times as much as before (the mean stays):
        moments that follow a drifting stream, exponentially weighted per decay. Returns
        self."""
        self.count *= factor
        self.m2 = self.m2 * factor
        return self

    @property
    def var(self) -> np.ndarray:
        """Population variance (1 where nothing was seen yet)."""
        if self.count == 0:
            return np.ones(self.shape, dtype=np.float64)
        return self.m2 / self.count

    # ------------------------------------------------------------------ flat form
    def size(self) -> int:
        return 1 + 2 * int(np.prod(self.shape, dtype=np.int64))

    def pack(self) -> np.ndarray:
        """[count, mean..., M2...] as one float64 vector, for a collective."""
        return np.concatenate([[self.count], self.mean.ravel(), self.m2.ravel()])

    @classmethod
    def unpack(cls, vec: np.ndarray, shape: tuple[int, ...] = ()) -> "Moments":
        out = cls(shape)
        k = int(np.prod(out.shape, dtype=np.int64))
        out.count = float(vec[0])
        out.mean = np.array(vec[1:1 + k], dtype=np.float64).reshape(out.shape)
        out.m2 = np.array(vec[1 + k:1 + 2 * k], dtype=np.float64).reshape(out.shape)
        return out

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean.copy(), "m2": self.m2.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.count = float(state["count"])
        self.mean = np.array(state["mean"], dtype=np.float64).reshape(self.shape)
        self.m2 = np.array(state["m2"], dtype=np.float64).reshape(self.shape)
