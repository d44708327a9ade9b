"""Where a synchronous learner's experience comes from, one batch of messages per iteration.

``RemoteActors``: the learner's actor ranks (``mpirl.execution.sync.actor``), over the protocol
of ``mpirl.execution.sync.protocol``. ``SelfActing``: the learner steps its own envs, when the
layout leaves no rank for actors. The algorithm's weight publication
(``mpirl.algos.api.Publication``) decides when actors get fresh weights and whether they
collect the next messages while the learner trains (pipelined).

On-policy, weights and messages strictly alternate: weights out, then the messages collected
with them. Pipelined, a learner asks for the next messages as soon as it has taken the current
ones, and trains while its actors collect; the weights then go out from a copy, and their
sends complete between updates (``poll``).
"""
from __future__ import annotations

import abc
import math
from typing import Callable

import numpy as np

from mpirl import comm
from mpirl.acting.messages import PackedArrays
from mpirl.algos.api import Publication
from mpirl.execution.sync.protocol import (CONTROL_SIZE, CONTROL_TAG, CUT_TAG, MESSAGE_TAG, RUN,
                                           SAVE, STOP, WEIGHTS_TAG)
from mpirl.runtime import timing


class ExperienceSource(abc.ABC):
    """One iteration: ``take`` the messages (waiting for them), let the trainer ingest them,
    ``release`` them. ``messages`` are the buffers, one per acting rank."""

    messages: list[PackedArrays]
    actor_ranks: list[int] = []  # world ranks whose messages carry their time breakdown
    progress = 0.0               # fraction of the budget done, for the acting ranks
    columns: tuple[str, ...] = ()  # progress.csv columns that ``row`` fills

    @abc.abstractmethod
    def take(self, updates: int) -> list[PackedArrays]:
        """This iteration's messages. ``updates``: the trainer's count so far."""

    def release(self, updates: int, last: bool) -> None:
        """The trainer has ingested the messages (the buffers may be reused)."""

    def poll(self) -> None:
        """Between updates: let transfers in flight progress."""

    def settle(self) -> None:
        """Complete what is in flight (before a checkpoint or the end)."""

    def join_checkpoint(self) -> None:
        """Bring the acting ranks to the checkpoint collective (after ``settle``)."""

    def finish(self, code: int) -> None:
        """The run is over, with this exit code."""

    def timings(self) -> dict[int, np.ndarray]:
        """The latest time breakdown (``mpirl.runtime.timing``) of each acting rank, by world
        rank."""
        return {rank: m["timing"].copy() for m, rank in zip(self.messages, self.actor_ranks)}

    def row(self, seconds: float) -> dict:
        """Values for ``columns`` at a progress row (``seconds`` since the previous one);
        called on every learner at once."""
        return {}

    def own_state(self) -> dict:
        """This learner's part of a checkpoint."""
        return {}

    def shared_state(self) -> dict:
        """What the lead saves for every learner."""
        return {}

    def load(self, shared: dict | None, own: dict | None) -> None:
        pass

    def steps_taken(self) -> int | None:
        """Env steps in this iteration's messages, where rollouts may have been cut short;
        None: always the full count."""
        return None


class SelfActing(ExperienceSource):
    """The learner's own envs, stepped with its current weights (``sync_weights`` brings the
    acting copy up to date)."""

    def __init__(self, setup, collector, sync_weights: Callable[[], None]):
        self.collector = collector
        self.messages = [setup.make_message()]
        self._sync_weights = sync_weights

    def take(self, updates: int) -> list[PackedArrays]:
        self._sync_weights()
        self.collector.collect(self.messages[0], self.progress)
        return self.messages

    def finish(self, code: int) -> None:
        self.collector.envs.close()

    def own_state(self) -> dict:
        return {"collector": self.collector.state_dict()}


class RemoteActors(ExperienceSource):
    """This learner's actors. ``weights`` is the host array sent to them; ``sync_weights``
    brings it up to date."""

    def __init__(self, setup, comms: comm.RoleComms, weights: np.ndarray,
                 sync_weights: Callable[[], None], publication: Publication):
        self.group, self.learners = comms.group, comms.learners
        self.sources = list(range(1, comms.group.Get_size()))  # this learner's actors
        self.actor_ranks = setup.layout.actors_of(comms.rank)  # the same, as world ranks
        self.messages = [setup.make_message() for _ in self.sources]
        self.publication = publication
        self.pipelined = publication.pipelined
        self.ready = False     # messages received and not yet taken
        self._weights, self._sync_weights = weights, sync_weights
        self._control = np.zeros(CONTROL_SIZE, dtype=np.float64)
        self._incoming = None  # receives of the next messages, while actors collect them
        self._sending: list = []  # pipelined: weight sends that complete during training
        self._send_buffer = None  # pipelined: the weights being sent (training goes on)
        # pipelined, after a resume: the weights the actors held at the checkpoint, which the
        # next command sends even if fresh weights are not due yet
        self._resend: np.ndarray | None = None
        # --straggler-cutoff: once this many actors have delivered, the others are cut
        self.cutting = "length" in self.messages[0].views and not self.pipelined
        cutoff = getattr(setup.cfg, "straggler_cutoff", 0.0)
        self._enough = max(1, math.ceil(cutoff * len(self.sources)))
        self._envs_per_actor = setup.cfg.envs_per_actor
        self._requests = 0  # RUN requests so far: a cut names the one it ends
        self._cut_note = np.zeros(1, dtype=np.float64)
        self._cuts: list = []  # cut sends in flight
        self._rollouts = np.zeros(2)  # since the last row: rollouts cut short, rollouts
        if self.cutting:
            self.columns = ("cut_rollouts",)

    # ------------------------------------------------------------------ an iteration
    def take(self, updates: int) -> list[PackedArrays]:
        if not self.pipelined or not (self._incoming is not None or self.ready):
            self._request(self.publication.due(updates))
        self.settle()
        self.ready = False
        return self.messages

    def release(self, updates: int, last: bool) -> None:
        if self.pipelined and not last:
            self._request(self.publication.due(updates))

    def poll(self) -> None:
        if self._sending and comm.test(self._sending):
            self._sending = []

    def settle(self) -> None:
        """Wait for messages still being collected (before actors are given a new command)."""
        self._finish_sends()
        if self._incoming is not None:
            timing.switch("wait_rollouts")
            if self.cutting:
                self._wait_cutting_stragglers()
            else:
                comm.wait(self._incoming, what="rollouts", peers=self.actor_ranks)
            self._incoming = None
            self.ready = True

    def _wait_cutting_stragglers(self) -> None:
        """Wait for the rollouts; once enough have come, tell the late actors to send what
        they have."""
        reqs, cut = self._incoming, False
        arrived = [False] * len(reqs)

        def done() -> bool | None:
            nonlocal cut
            for i, req in enumerate(reqs):
                if not arrived[i] and comm.test([req]):
                    arrived[i] = True
            count = sum(arrived)
            if count == len(reqs):
                return True
            if count >= self._enough and not cut:
                cut = True
                self._cut_note[0] = self._requests
                late = [s for s, a in zip(self.sources, arrived) if not a]
                self._cuts = comm.isend_all(self.group, self._cut_note, late, tag=CUT_TAG)
            return None

        comm.poll_until(done, what="rollouts from its actors")
        comm.wait(self._cuts, what="its actors to take a cut", peers=self.actor_ranks)
        self._cuts = []
        lengths = [int(m["length"][0]) for m in self.messages]
        self._rollouts += (sum(n < self.messages[0]["rewards"].shape[0] for n in lengths),
                           len(lengths))

    def steps_taken(self) -> int | None:
        if not self.cutting:
            return None
        return sum(int(m["length"][0]) for m in self.messages) * self._envs_per_actor

    def row(self, seconds: float) -> dict:
        if not self.cutting:
            return {}
        counts = comm.allreduce_sum_(self.learners, self._rollouts.copy(),
                                     what="the other learners at a log row")
        self._rollouts[:] = 0
        return {"cut_rollouts": counts[0] / max(counts[1], 1)}

    def join_checkpoint(self) -> None:
        self._tell(SAVE, what="its actors to take a checkpoint command")

    def finish(self, code: int) -> None:
        self.settle()
        self._tell(STOP, code, weights=True, what="its actors to take the stop command")

    # ------------------------------------------------------------------ checkpoints
    def own_state(self) -> dict:
        # received for the next iteration: the resumed run continues from them
        return {"pending": [m.buffer.copy() for m in self.messages]} if self.ready else {}

    def shared_state(self) -> dict:
        """Pipelined, actors may act with older weights than the learners': the last ones
        sent (None before any were sent, and on-policy, where they are always current)."""
        if self._resend is not None:
            return {"actor_weights": self._resend.copy()}
        sent = None if self._send_buffer is None else self._send_buffer.copy()
        return {"actor_weights": sent}

    def load(self, shared: dict | None, own: dict | None) -> None:
        if shared and shared.get("actor_weights") is not None:
            self._resend = np.asarray(shared["actor_weights"], dtype=np.float32)
        for message, buffer in zip(self.messages, (own or {}).get("pending") or []):
            message.buffer[:] = buffer
            message["requests"][:] = 0  # a stop asked for then was the previous segment's
            self.ready = True

    # ------------------------------------------------------------------ the protocol
    def _command(self, command: float = RUN, code: int = 0, weights: bool = True) -> list:
        """Start sending the control message, then (if ``weights``) the current weights, to
        the actors; returns the send requests. Weights to resend go out in any case."""
        resend, self._resend = self._resend, None
        send = weights or resend is not None
        self._control[:] = (command, code, 1.0 if send else 0.0, self.progress, self._requests)
        reqs = comm.isend_all(self.group, self._control, self.sources, tag=CONTROL_TAG)
        if send:
            if weights:
                self._sync_weights()
            source = self._weights if weights else resend
            if self.pipelined:  # the weights change while this copy is sent
                if self._send_buffer is None:
                    self._send_buffer = np.empty_like(self._weights)
                self._send_buffer[:] = source
                source = self._send_buffer
            reqs += comm.isend_all(self.group, source, self.sources, tag=WEIGHTS_TAG)
        return reqs

    def _tell(self, command: float, code: int = 0, weights: bool = False,
              what: str = "its actors to take a command") -> None:
        """Send a command (and weights) and wait until the actors have it."""
        peers = self.actor_ranks * (2 if weights else 1)
        comm.wait(self._command(command, code, weights), max_sleep_s=comm.HANDOFF_SLEEP_S,
                  what=what, peers=peers)

    def _request(self, weights: bool) -> None:
        """Ask the actors for their next messages: receives posted first, so messages land
        while the weights are still going out. On-policy, the sends are pushed to completion
        with brisk polls, since each step of a large transfer needs this rank's attention;
        pipelined, they complete while training, through ``poll`` between updates."""
        self._finish_sends()
        self._requests += 1
        self._incoming = comm.irecv_all(self.group, [m.buffer for m in self.messages],
                                        self.sources, tag=MESSAGE_TAG)
        timing.switch("send")
        sends = self._command(weights=weights)
        if self.pipelined:
            self._sending = sends
        else:
            comm.wait(sends, max_sleep_s=comm.HANDOFF_SLEEP_S,
                      what="its actors to take the weights", peers=self.actor_ranks * 2)

    def _finish_sends(self) -> None:
        if self._sending:
            timing.switch("send")
            comm.wait(self._sending, max_sleep_s=comm.HANDOFF_SLEEP_S,
                      what="its actors to take the weights", peers=self.actor_ranks * 2)
            self._sending = []
