"""A learner's side of the actor protocol (``mpirl.execution.sync.actor``): commands and weights out to
its actors, their rollouts in.

On-policy, the two strictly alternate: weights out, then the rollouts collected with them.
Pipelined (``pipelined=True``), a learner asks for the next rollouts as soon as it has taken
the current ones, and trains while its actors collect; the weights then go out from a copy,
and their sends complete between updates (``pump``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mpirl import comm
from mpirl.runtime import timing
from mpirl.execution.sync.actor import CONTROL_SIZE, CONTROL_TAG, ROLLOUT_TAG, RUN, WEIGHTS_TAG


class ActorLink:
    """``weights`` is the host array sent to actors; ``sync_weights`` brings it up to date."""

    def __init__(self, setup, comms: comm.RoleComms, weights: np.ndarray,
                 sync_weights: Callable[[], None], pipelined: bool):
        self.group = comms.group
        self.sources = list(range(1, comms.group.Get_size()))  # this learner's actors
        self.actor_ranks = setup.layout.actors_of(comms.rank)  # the same, as world ranks
        self.rollouts = [setup.make_rollout_buffer() for _ in range(max(1, len(self.sources)))]
        self.pipelined = pipelined
        self.progress = 0.0    # fraction of the budget done, sent with every command
        self.ready = False     # rollouts received and not yet taken
        self._weights, self._sync_weights = weights, sync_weights
        self._control = np.zeros(CONTROL_SIZE, dtype=np.float64)
        self._incoming = None  # receives of the next rollouts, while actors collect them
        self._sending: list = []  # pipelined: weight sends that complete during training
        self._send_buffer = None  # pipelined: the weights being sent (training goes on)
        # pipelined, after a resume: the weights the actors held at the checkpoint, which the
        # next command sends even if fresh weights are not due yet
        self.resend: np.ndarray | None = None

    def command(self, command: float = RUN, code: int = 0, weights: bool = True) -> list:
        """Start sending the control message, then (if ``weights``) the current weights, to
        the actors; returns the send requests. A pending ``resend`` goes out in any case."""
        resend, self.resend = self.resend, None
        send = weights or resend is not None
        self._control[:] = (command, code, 1.0 if send else 0.0, self.progress)
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

    def actor_weights(self) -> np.ndarray | None:
        """Pipelined: a copy of the weights the actors act with (the last ones sent), for a
        checkpoint; None before any were sent, and on-policy, where they are always current."""
        if self.resend is not None:
            return self.resend.copy()
        return None if self._send_buffer is None else self._send_buffer.copy()

    def tell(self, command: float, code: int = 0, weights: bool = False,
             what: str = "its actors to take a command") -> None:
        """Send a command (and weights) and wait until the actors have it."""
        peers = self.actor_ranks * (2 if weights else 1)
        comm.wait(self.command(command, code, weights), max_sleep_s=comm.HANDOFF_SLEEP_S,
                  what=what, peers=peers)

    def request(self, weights: bool) -> None:
        """Ask the actors for their next rollouts: receives posted first, so rollouts land
        while the weights are still going out. On-policy, the sends are pushed to completion
        with brisk polls, since each step of a large transfer needs this rank's attention;
        pipelined, they complete while training, through ``pump`` between updates."""
        self.finish_sends()
        self._incoming = comm.irecv_all(self.group, [r.buffer for r in self.rollouts],
                                        self.sources, tag=ROLLOUT_TAG)
        timing.switch("send")
        sends = self.command(weights=weights)
        if self.pipelined:
            self._sending = sends
        else:
            comm.wait(sends, max_sleep_s=comm.HANDOFF_SLEEP_S,
                      what="its actors to take the weights", peers=self.actor_ranks * 2)

    @property
    def in_flight(self) -> bool:
        """Whether rollouts have been asked for and not yet received."""
        return self._incoming is not None

    def pump(self) -> None:
        """Between updates: let pending weight sends progress (and note when they are done)."""
        if self._sending and comm.test(self._sending):
            self._sending = []

    def finish_sends(self) -> None:
        if self._sending:
            timing.switch("send")
            comm.wait(self._sending, max_sleep_s=comm.HANDOFF_SLEEP_S,
                      what="its actors to take the weights", peers=self.actor_ranks * 2)
            self._sending = []

    def drain(self) -> None:
        """Wait for rollouts still being collected (before actors are given a new command)."""
        self.finish_sends()
        if self._incoming is not None:
            timing.switch("wait_rollouts")
            comm.wait(self._incoming, what="rollouts", peers=self.actor_ranks)
            self._incoming = None
            self.ready = True
