"""The parameter server's message layout and the sharding of the vector. No MPI here.

Every message is one byte buffer: a header of ``HEADER`` float64 slots, then a float32
payload (a gradient slice going to a server, a weight slice coming back). float64 holds
counters exactly up to 2**53, so versions and step counts travel in the header.

Worker -> server header: ``[kind, version, report...]``, where ``version`` is the server
version the worker's copy of the slice came from and ``report`` is the caller's (steps,
episode statistics, ...). Server -> worker header: ``[version, reply...]``.
"""
from __future__ import annotations

import numpy as np

HEADER = 32
# apply this payload; count the report only; last message; send me the slice, nothing else;
# no more messages until the server loop starts again (after a checkpoint, say)
GRADIENT, SKIP, BYE, FETCH, PAUSE = 0.0, 1.0, 2.0, 3.0, 4.0
GRAD_TAG, REPLY_TAG, STATS_TAG = 21, 22, 23
REPORT_SLOTS = HEADER - 2  # worker -> server, after kind and version
REPLY_SLOTS = HEADER - 1   # server -> worker, after version


class Message:
    """A header and a float32 payload of ``n`` values as views into one ``buffer``."""

    def __init__(self, n: int):
        self.buffer = np.zeros(HEADER * 8 + n * 4, dtype=np.uint8)
        self.header = self.buffer[:HEADER * 8].view(np.float64)
        self.payload = self.buffer[HEADER * 8:].view(np.float32)

    @property
    def header_bytes(self) -> np.ndarray:
        """The header alone, for messages without a payload (SKIP, BYE)."""
        return self.buffer[:HEADER * 8]


def shard_bounds(numel: int, servers: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` slices of a ``numel`` vector, one per server, sizes within one
    of each other (the first ``numel % servers`` get the extra value)."""
    if servers < 1:
        raise ValueError("at least one server is needed")
    base, extra = divmod(numel, servers)
    bounds, lo = [], 0
    for s in range(servers):
        hi = lo + base + (1 if s < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds
