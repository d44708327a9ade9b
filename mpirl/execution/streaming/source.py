"""Where a streaming learner's unrolls come from: ``StreamingActors`` (its actor ranks, which
act without waiting) or ``SelfActingBatch`` (its own envs, when the layout leaves no actors).

``StreamingActors`` takes unrolls in arrival order, from whichever actors delivered, and holds
at most ``capacity`` unrolls of any one actor (received and not yet trained on); past that it
does not take that actor's next unroll, which holds the actor back once it has
--max-in-flight unrolls outstanding. An actor is expected to deliver whenever the learner has
room for it: one that stays silent past --comm-timeout then is reported as hung, even while
the others keep the learner busy.
"""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

import numpy as np

from mpirl import comm
from mpirl.acting.messages import EPISODE_STATS, PackedArrays
from mpirl.execution.streaming.protocol import (CONTROL_TAG, DRAINED_TAG, FIELDS,
                                                HEADER, RELEASE, SAVE, STOP, UNROLL_TAG,
                                                WEIGHTS_TAG, write_header)
from mpirl.execution.sync.sources import ExperienceSource
from mpirl.runtime import timing

COLUMNS = ("policy_lag_mean", "policy_lag_max", "dropped_unrolls", "actor_blocked")


class StreamingActors(ExperienceSource):
    """This learner's actors. ``weights`` is the host array of the policy's weights;
    ``sync_weights`` brings it up to date."""

    columns = COLUMNS

    def __init__(self, setup, comms: comm.RoleComms, weights: np.ndarray,
                 sync_weights: Callable[[], None]):
        cfg = setup.cfg
        self.setup, self.group, self.learners = setup, comms.group, comms.learners
        self.sources = list(range(1, comms.group.Get_size()))  # group ranks of the actors
        self.actor_ranks = setup.layout.actors_of(comms.rank)  # the same, as world ranks
        n = len(self.sources)
        self.batch_size, self.max_lag = cfg.batch_unrolls, cfg.max_policy_lag
        # enough for the next batch while this learner trains on one; more would only add lag
        self.capacity = math.ceil(self.batch_size / n)
        self._weights, self._sync_weights = weights, sync_weights
        self._updates = 0
        self._synced = -1          # version of the weights in ``weights``
        self._draining = False
        # unrolls: free buffers, receives under way, received ones in arrival order
        self._pool: list[PackedArrays] = []
        self._receiving: list[tuple] = []
        self._queue: deque = deque()
        self._batch: list[tuple[int, PackedArrays]] = []
        self.messages: list[PackedArrays] = []
        self._held = [0] * n           # per actor: receiving + queued + in the batch
        self._received = [0] * n       # per actor: unrolls received since the start
        self._heard = [time.perf_counter()] * n
        self._room_since = [time.perf_counter()] * n  # since when the learner has room
        # weights: one message in flight per actor at most
        self._out = [np.zeros(weights.size + HEADER, dtype=np.float32) for _ in range(n)]
        self._sending: list = [None] * n
        self._sent_version = [-1] * n
        self._weights_sent = [0] * n
        # reports
        self._timings: dict[int, np.ndarray] = {}
        self._blocked = [0] * n
        self._lags: list[int] = []
        self._dropped = 0
        self._taken = 0  # unrolls trained on or dropped
        self._restored = 0  # pending unrolls taken over from a checkpoint
        self._dropped_episodes = np.zeros(EPISODE_STATS)

    # ------------------------------------------------------------------ an iteration
    def take(self, updates: int) -> list[PackedArrays]:
        self._updates = updates
        timing.switch("wait_rollouts")
        comm.poll_until(self._fill, what=f"unrolls from its actors (ranks "
                        f"{', '.join(map(str, self.actor_ranks))})")
        self.messages = [m for _, m in self._batch]
        self.messages[0]["episodes"][:] += self._dropped_episodes
        self._dropped_episodes[:] = 0
        return self.messages

    def _fill(self) -> bool | None:
        """One poll while a batch fills: True once it is full."""
        self._publish()
        self._receive()
        while self._queue and len(self._batch) < self.batch_size:
            actor, message = self._queue.popleft()
            self._taken += 1
            lag = self._updates - int(message["version"][0])
            if self.max_lag and lag > self.max_lag:
                self._dropped += 1
                self._dropped_episodes += message["episodes"]
                self._free(actor, message)
                continue
            self._lags.append(lag)
            self._batch.append((actor, message))
        if len(self._batch) == self.batch_size:
            return True
        comm.overdue([max(h, r) if held < self.capacity else None
                      for h, r, held in zip(self._heard, self._room_since, self._held)],
                     self.actor_ranks, "unrolls")
        return None

    def release(self, updates: int, last: bool) -> None:
        for actor, message in self._batch:
            self._free(actor, message)
        self._batch = []
        self._receive()  # let waiting actors go on while this learner trains

    def poll(self) -> None:
        self._receive()

    # ------------------------------------------------------------------ unrolls in
    def _free(self, actor: int | None, message: PackedArrays) -> None:
        self._pool.append(message)
        if actor is None:  # taken over from a checkpoint
            return
        if self._held[actor] == self.capacity:
            self._room_since[actor] = time.perf_counter()
        self._held[actor] -= 1

    def _receive(self) -> None:
        """Complete the receives under way, and start receiving what has arrived from actors
        the learner has room for (from all of them while draining)."""
        still = []
        for request, actor, message in self._receiving:
            if comm.test([request]):
                self._received[actor] += 1
                self._queue.append((actor, message))
                self._timings[self.actor_ranks[actor]] = message["timing"].copy()
                self._blocked[actor] = int(message["blocked"][0])
            else:
                still.append((request, actor, message))
        self._receiving = still
        for actor, source in enumerate(self.sources):
            while self._draining or self._held[actor] < self.capacity:
                message = self._pool.pop() if self._pool else self.setup.make_message(FIELDS)
                request = comm.irecv_arrived(self.group, message.buffer, source, UNROLL_TAG)
                if request is None:
                    self._pool.append(message)
                    break
                self._held[actor] += 1
                self._heard[actor] = time.perf_counter()
                self._receiving.append((request, actor, message))

    # ------------------------------------------------------------------ weights out
    def _publish(self) -> None:
        """Send the current weights to every actor whose previous weights are taken and that
        lacks these (none while draining)."""
        for actor, source in enumerate(self.sources):
            request = self._sending[actor]
            if request is not None:
                if not comm.test([request]):
                    continue
                self._sending[actor] = None
            if self._draining or self._sent_version[actor] == self._updates:
                continue
            if self._synced != self._updates:
                self._sync_weights()
                self._synced = self._updates
            out = self._out[actor]
            out[:-HEADER] = self._weights
            write_header(out, self._updates, self.progress)
            self._sending[actor] = comm.isend(self.group, out, source, tag=WEIGHTS_TAG)
            self._sent_version[actor] = self._updates
            self._weights_sent[actor] += 1

    # ------------------------------------------------------------------ checkpoints, the end
    def _drain(self, command: float, code: int = 0) -> None:
        """Stop the actors (``command``: SAVE or STOP), take every unroll they sent, let the
        weights in flight land, and release them: nothing is left in flight."""
        self._draining = True
        n = len(self.sources)
        control = np.array([command, code, 0.0])
        requests = comm.isend_all(self.group, control, self.sources, tag=CONTROL_TAG)
        reports = [np.zeros(1) for _ in range(n)]
        report_requests = comm.irecv_all(self.group, reports, self.sources, tag=DRAINED_TAG)

        def drained() -> bool | None:
            self._receive()
            self._publish()
            if (comm.test(report_requests) and comm.test(requests)
                    and all(r is None for r in self._sending)
                    and all(int(rep[0]) == got for rep, got in zip(reports, self._received))):
                return True
            return None

        comm.poll_until(drained, what=f"its actors (ranks "
                        f"{', '.join(map(str, self.actor_ranks))}) to hand in their last unrolls")
        releases = [np.array([RELEASE, code, sent], dtype=np.float64)
                    for sent in self._weights_sent]
        comm.wait([comm.isend(self.group, r, s, tag=CONTROL_TAG)
                   for r, s in zip(releases, self.sources)],
                  what="its actors to take the release", peers=self.actor_ranks)
        self._draining = False
        now = time.perf_counter()
        self._heard = [now] * n
        self._room_since = [now] * n

    def join_checkpoint(self) -> None:
        timing.switch("checkpoint")
        self._drain(SAVE)

    def finish(self, code: int) -> None:
        self._drain(STOP, code)

    def own_state(self) -> dict:
        # received and not trained on: the resumed run trains on them first. With the counts,
        # a checkpoint shows its cut is consistent: every unroll the actors sent was received,
        # and each is either taken (trained on, or dropped for its lag) or pending
        return {"pending": [m.buffer.copy() for _, m in self._queue],
                "received": sum(self._received), "restored": self._restored,
                "taken": self._taken}

    def load(self, shared: dict | None, own: dict | None) -> None:
        for buffer in (own or {}).get("pending") or []:
            message = self.setup.make_message(FIELDS)
            if message.buffer.size != len(buffer):
                continue  # saved under other settings: those unrolls are not used
            message.buffer[:] = buffer
            message["requests"][:] = 0  # a stop asked for then was the previous segment's
            # counted against no actor: every actor starts with room for new unrolls
            self._queue.append((None, message))
            self._restored += 1

    # ------------------------------------------------------------------ reports
    def timings(self) -> dict[int, np.ndarray]:
        return dict(self._timings)

    def row(self, seconds: float) -> dict:
        """Collective over the learners (every learner writes a row at the same time): the
        policy lag of the unrolls trained on since the last row, unrolls dropped for their lag
        and the actors' back-pressure waits so far, over all learners."""
        lags = np.array(self._lags or [0])
        mine = np.array([lags.sum(), len(self._lags), lags.max(), self._dropped,
                         sum(self._blocked)], dtype=np.float64)
        self._lags = []
        parts = comm.allgather_(self.learners, mine, what="the other learners at a log row")
        total = parts.sum(axis=0)
        return {"policy_lag_mean": total[0] / max(total[1], 1),
                "policy_lag_max": parts[:, 2].max(), "dropped_unrolls": total[3],
                "actor_blocked": total[4]}


class SelfActingBatch(ExperienceSource):
    """The learner's own envs: --batch-unrolls unrolls per iteration, all acted with its
    current weights (``sync_weights`` brings the acting copy up to date)."""

    def __init__(self, setup, collector, sync_weights: Callable[[], None]):
        self.collector = collector
        self.messages = [setup.make_message(FIELDS) for _ in range(setup.cfg.batch_unrolls)]
        self._sync_weights = sync_weights

    def take(self, updates: int) -> list[PackedArrays]:
        self._sync_weights()
        for message in self.messages:
            timing.switch("other")
            self.collector.collect(message, self.progress)
            message["version"][0] = updates
        return self.messages

    def finish(self, code: int) -> None:
        self.collector.envs.close()

    def own_state(self) -> dict:
        return {"collector": self.collector.state_dict()}
