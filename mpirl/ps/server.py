"""One parameter-server rank: it owns a slice of the vector and serves every worker.

The loop waits (quietly, ``comm.wait_any``) for whichever worker speaks first, applies its
gradient unless it is too stale, and sends the fresh slice back to that worker only. Workers
never wait for each other. Each server counts its own version (updates applied); a gradient's
staleness is this version minus the one the worker's slice came from.

The servers other than the first send their counters to the first one (the lead) now and
then, and once more when they finish, so the lead can report every server's update rate.
A server's loop ends when every worker has said goodbye (``BYE``) or asked for a pause
(``PAUSE``, e.g. for a checkpoint; ``serve`` may then be called again) and, on the lead, when
every other server has sent its final counters for this loop: no message is left unmatched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mpirl import comm
from mpirl.ps.messages import (BYE, FETCH, GRAD_TAG, GRADIENT, PAUSE, REPLY_SLOTS, REPLY_TAG,
                               REPORT_SLOTS, STATS_TAG, Message)
from mpirl.runtime import signals

# the counters a server sends the lead: see ServerStats.to_array
STATS_SIZE = 9


@dataclass
class ServerStats:
    """What one server has done so far."""

    updates: int = 0          # gradients applied
    dropped: int = 0          # gradients older than max_staleness, not applied
    skipped: int = 0          # SKIP messages (reports without a usable gradient)
    staleness_sum: float = 0.0  # over the gradients received (applied or dropped)
    staleness_max: int = 0    # over the run
    window_max: int = 0       # since the last report to the lead
    seconds: float = 0.0      # serving so far
    requests: int = 0         # a stop signal this server received
    busy_s: float = 0.0       # of ``seconds``, not waiting for messages

    def to_array(self, out: np.ndarray, final: bool) -> np.ndarray:
        out[:] = (self.updates, self.dropped, self.skipped, self.staleness_sum,
                  self.window_max, self.seconds, self.requests, self.busy_s, float(final))
        return out

    @staticmethod
    def from_array(a: np.ndarray) -> tuple["ServerStats", bool]:
        s = ServerStats(updates=int(a[0]), dropped=int(a[1]), skipped=int(a[2]),
                        staleness_sum=float(a[3]), window_max=int(a[4]), seconds=float(a[5]),
                        requests=int(a[6]), busy_s=float(a[7]))
        return s, bool(a[8])


class ServerHooks:
    """What the owner of a server adds: reading the workers' reports and filling replies."""

    def on_message(self, server: "ParameterServer", worker: int, kind: float,
                   report: np.ndarray, reply: np.ndarray) -> None:
        """Called for each GRADIENT or SKIP message, before it is applied. ``report`` holds
        the worker's report slots; write the reply slots into ``reply`` (zeroed)."""

    def on_stats(self, server_index: int, stats: ServerStats) -> None:
        """On the lead: another server's counters arrived."""


class ParameterServer:
    """Serves ``values`` (this server's slice, updated in place by ``rule``) to ``workers``.

    ``servers`` lists the world ranks of all servers; this one is ``servers[index]``.
    ``max_staleness`` > 0 drops gradients computed from a slice more than that many updates
    old. ``stats_every_s``: how often a non-lead server reports its counters.
    """

    def __init__(self, world, index: int, servers: list[int], workers: list[int],
                 values: np.ndarray, rule, max_staleness: int = 0,
                 hooks: ServerHooks | None = None, stats_every_s: float = 0.5,
                 version: int = 0):
        self.world, self.index, self.servers, self.workers = world, index, servers, workers
        self.values, self.rule, self.max_staleness = values, rule, max_staleness
        self.hooks = hooks or ServerHooks()
        self.stats_every_s = stats_every_s
        self.stats = ServerStats()  # this segment's counts
        self.version = version  # a resumed server continues its count

    @property
    def lead(self) -> bool:
        return self.index == 0

    def serve(self) -> ServerStats:
        """Serve until every worker has said BYE, or every worker PAUSE (``paused`` is then
        True and ``serve`` can be called again); returns this server's counters."""
        n, size = len(self.workers), len(self.values)
        inbox = [Message(size) for _ in range(n)]
        outbox = [Message(size) for _ in range(n)]
        sends: list = [None] * n
        recvs = [comm.irecv(self.world, inbox[i].buffer, w, GRAD_TAG)
                 for i, w in enumerate(self.workers)]
        heard: list[float | None] = [time.perf_counter()] * n  # None: said BYE or PAUSE
        others = self.servers[1:] if self.lead else []
        stats_in = [np.zeros(STATS_SIZE) for _ in others]
        recvs += [comm.irecv(self.world, a, r, STATS_TAG) for a, r in zip(stats_in, others)]
        stats_out, stats_send = np.zeros(STATS_SIZE), None
        peers = list(self.workers) + list(others)
        waiting = n + len(others)  # workers still to say BYE, servers still to send finals
        self.paused = False
        served_before, busy_before = self.stats.seconds, self.stats.busy_s
        start = last_stats = time.perf_counter()
        waited = 0.0
        while waiting:
            t = time.perf_counter()
            i = comm.wait_any(recvs, what="a gradient from any worker", peers=peers)
            waited += time.perf_counter() - t
            if i < n:
                heard[i] = time.perf_counter()
            comm.overdue(heard, self.workers, "its gradient")
            if i >= n:  # another server's counters (lead only)
                k = i - n
                stats, final = ServerStats.from_array(stats_in[k])
                self.hooks.on_stats(k + 1, stats)
                if final:
                    waiting -= 1
                else:
                    recvs[i] = comm.irecv(self.world, stats_in[k], others[k], STATS_TAG)
                continue
            msg = inbox[i]
            kind = msg.header[0]
            if kind == BYE or kind == PAUSE:
                waiting -= 1
                heard[i] = None
                self.paused = kind == PAUSE
                continue  # recvs[i] stays complete (null): nothing more comes from it
            if sends[i] is not None:  # the previous reply: the worker has taken it already
                comm.wait(sends[i], what="a worker to take its reply", peers=[self.workers[i]])
            out = outbox[i]
            out.header[1:] = 0.0
            if kind != FETCH:
                self.hooks.on_message(self, i, kind, msg.header[2:2 + REPORT_SLOTS],
                                      out.header[1:1 + REPLY_SLOTS])
            if kind == GRADIENT:
                self._apply(msg)
            elif kind != FETCH:
                self.stats.skipped += 1
            out.header[0] = self.version
            out.payload[:] = self.values
            sends[i] = comm.isend(self.world, out.buffer, self.workers[i], REPLY_TAG)
            recvs[i] = comm.irecv(self.world, msg.buffer, self.workers[i], GRAD_TAG)
            now = time.perf_counter()
            self.stats.seconds = served_before + now - start
            self.stats.busy_s = busy_before + now - start - waited
            if not self.lead and now - last_stats >= self.stats_every_s and \
                    (stats_send is None or comm.test([stats_send])):
                self.stats.requests = signals.requested()
                self.stats.to_array(stats_out, final=False)
                self.stats.window_max = 0
                stats_send = comm.isend(self.world, stats_out, self.servers[0], STATS_TAG)
                last_stats = now
        now = time.perf_counter()
        self.stats.seconds = served_before + now - start
        self.stats.busy_s = busy_before + now - start - waited
        comm.wait([s for s in sends if s is not None], what="workers to take their replies",
                  peers=[w for w, s in zip(self.workers, sends) if s is not None])
        if not self.lead:
            if stats_send is not None:
                comm.wait(stats_send, what="the lead server to take counters",
                          peers=[self.servers[0]], patience=comm.ON_PEERS)
            self.stats.requests = signals.requested()
            comm.send(self.world, self.stats.to_array(stats_out, final=True), self.servers[0],
                      STATS_TAG, what="the lead server to take final counters",
                      peer=self.servers[0], patience=comm.ON_PEERS)
        return self.stats

    def _apply(self, msg: Message) -> None:
        staleness = self.version - int(msg.header[1])
        s = self.stats
        s.staleness_sum += staleness
        s.staleness_max = max(s.staleness_max, staleness)
        s.window_max = max(s.window_max, staleness)
        if self.max_staleness and staleness > self.max_staleness:
            s.dropped += 1
            return
        self.rule.apply(msg.payload)
        self.version += 1
        s.updates += 1
