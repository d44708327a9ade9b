"""A worker's side of the parameter server: push a gradient, get the fresh vector back."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.ps.messages import (BYE, FETCH, GRAD_TAG, GRADIENT, PAUSE, REPLY_SLOTS, REPLY_TAG,
                               REPORT_SLOTS, Message)


class ParameterClient:
    """Talks to every server of a vector sharded as ``bounds`` (one ``[lo, hi)`` per server).

    ``exchange`` sends each server its slice of the gradient, tagged with the version that
    slice of the worker's copy came from, and receives every server's fresh slice straight
    after; the worker waits only for its own replies.
    """

    def __init__(self, world, servers: list[int], bounds: list[tuple[int, int]]):
        self.world, self.servers, self.bounds = world, servers, bounds
        self.out = [Message(hi - lo) for lo, hi in bounds]
        self.inbox = [Message(hi - lo) for lo, hi in bounds]
        self.versions = np.zeros(len(servers), dtype=np.int64)
        self.replies = np.zeros((len(servers), REPLY_SLOTS))
        self.report = np.zeros(REPORT_SLOTS)  # the caller fills it before each exchange

    def exchange(self, grad: np.ndarray | None, values: np.ndarray, kind: float = GRADIENT
                 ) -> np.ndarray:
        """Push ``grad`` (None with kind SKIP: the report only), receive the fresh vector
        into ``values``; returns the servers' reply slots, one row per server."""
        recvs = [comm.irecv(self.world, m.buffer, s, REPLY_TAG)
                 for m, s in zip(self.inbox, self.servers)]
        sends = []
        for m, s, (lo, hi), v in zip(self.out, self.servers, self.bounds, self.versions):
            m.header[0], m.header[1] = kind, v
            m.header[2:2 + REPORT_SLOTS] = self.report
            if kind == GRADIENT:
                m.payload[:] = grad[lo:hi]
                sends.append(comm.isend(self.world, m.buffer, s, GRAD_TAG))
            else:
                sends.append(comm.isend(self.world, m.header_bytes, s, GRAD_TAG))
        comm.wait(sends + recvs, what="the parameter servers' replies", patience=comm.ON_LEAD,
                  peers=list(self.servers) * 2)
        for k, (m, (lo, hi)) in enumerate(zip(self.inbox, self.bounds)):
            values[lo:hi] = m.payload
            self.versions[k] = int(m.header[0])
            self.replies[k] = m.header[1:1 + REPLY_SLOTS]
        return self.replies

    def pause(self) -> None:
        self.bye(PAUSE)

    def fetch(self, values: np.ndarray) -> None:
        """Receive the servers' current vector into ``values`` (and their versions), sending
        nothing to apply or count."""
        self.exchange(None, values, FETCH)

    def bye(self, kind: float = BYE) -> None:
        """Tell every server this worker is done (its last message to them), or with
        ``PAUSE`` that it sends nothing more until their loops start again."""
        sends = []
        for m, s in zip(self.out, self.servers):
            m.header[0] = kind
            sends.append(comm.isend(self.world, m.header_bytes, s, GRAD_TAG))
        comm.wait(sends, what="the parameter servers to take a goodbye", peers=self.servers,
                  patience=comm.ON_LEAD)
