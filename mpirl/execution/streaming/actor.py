"""The streaming actor loop: act with the newest weights at hand, send each unroll to the
learner without waiting for a reply, take new weights in whenever they have arrived.

An actor waits only for its first weights, when --max-in-flight of its unrolls are still
untaken (back-pressure: its learner is behind), and while its learner drains it for a
checkpoint or the end (``mpirl.execution.streaming.protocol``).
"""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.execution.checkpointing import Checkpointer, restore_process_rng_state
from mpirl.execution.setup import RunSetup
from mpirl.execution.streaming.protocol import (CONTROL_SIZE, CONTROL_TAG, DRAINED_TAG, FIELDS,
                                                HEADER, SAVE, UNROLL_TAG, WEIGHTS_TAG,
                                                read_header)
from mpirl.runtime import signals, timing
from mpirl.runtime.faults import Faults, poison_rewards


class StreamingActor:
    def __init__(self, setup: RunSetup, comms: comm.RoleComms, checkpointer: Checkpointer,
                 resume: dict | None = None):
        cfg = setup.cfg
        self.group, self.checkpointer = comms.group, checkpointer
        self.rank = comms.rank
        self.learner = setup.layout.learner_of(self.rank)
        model, self.weights = setup.actor_policy()  # the weights: the policy's own memory
        self.staging = np.zeros(self.weights.size + HEADER, dtype=np.float32)
        self.collector = setup.make_collector(model, self.rank, resume)
        if resume and resume.get("own"):
            restore_process_rng_state(resume["own"]["rng"])
        self.slots = [setup.make_message(FIELDS) for _ in range(cfg.max_in_flight)]
        self.sends: list = [None] * len(self.slots)
        self.control = np.zeros(CONTROL_SIZE, dtype=np.float64)
        self.control_req = comm.irecv(self.group, self.control, 0, tag=CONTROL_TAG)
        self.incoming = None        # a weights message being received
        self.version = -1           # of the weights in the model; -1 = none yet
        self.progress = 0.0         # fraction of the budget done, as the learner last said
        self.weights_received = 0
        self.sent = 0
        self.blocked = 0
        self.faults = Faults(self.rank)
        self.faults.slow_down(self.collector.envs)

    # ------------------------------------------------------------------ polls (never wait)
    def _take_weights(self) -> None:
        """Take in whatever weights have arrived; only the newest stays."""
        while True:
            if self.incoming is None:
                self.incoming = comm.irecv_arrived(self.group, self.staging, 0, WEIGHTS_TAG)
                if self.incoming is None:
                    return
            if not comm.test([self.incoming]):
                return
            self.incoming = None
            self.weights_received += 1
            self.weights[:] = self.staging[:-HEADER]
            self.version, self.progress = read_header(self.staging)

    def _command(self) -> float | None:
        return float(self.control[0]) if comm.test([self.control_req]) else None

    def _free_slot(self) -> int | None:
        for i, request in enumerate(self.sends):
            if request is None or comm.test([request]):
                self.sends[i] = None
                return i
        return None

    def _wait(self, ready, what: str, commands: bool = True) -> None:
        """Wait quietly until ``ready()`` or (with ``commands``) a command, taking weights in
        meanwhile."""
        def done():
            self._take_weights()
            return True if ready() or (commands and self._command() is not None) else None
        comm.poll_until(done, what=f"{what} (rank {self.learner})", patience=comm.ON_LEAD)

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Act until the learner says stop; returns the exit code it sends."""
        timing.clock().reset()
        unroll = 0  # in this process, for fault injection
        while True:
            command = self._command()
            if command is not None:
                code = self._serve(command)
                if code is not None:
                    break
                continue
            self._take_weights()
            if self.version < 0:
                timing.switch("wait_weights")
                self._wait(lambda: self.version >= 0, "the first weights from its learner")
                timing.clock().reset()  # training starts with them, as the learner's clock does
                continue
            slot = self._free_slot()
            if slot is None:  # back-pressure: the learner has not taken our unrolls yet
                self.blocked += 1
                timing.switch("send")
                self._wait(lambda: self._free_slot() is not None,
                           "its learner to take its unrolls")
                continue
            message = self.slots[slot]
            poison = self.faults.strike(unroll) == "nan"
            unroll += 1
            self.collector.collect(message, self.progress)
            if poison:
                poison_rewards(message)
            message["version"][0] = self.version
            message["blocked"][0] = self.blocked
            message["requests"][0] = signals.requested()
            timing.switch("send")
            timing.clock().snapshot(message["timing"])
            self.sends[slot] = comm.issend(self.group, message.buffer, 0, tag=UNROLL_TAG)
            self.sent += 1
        self.collector.envs.close()
        return code

    def _serve(self, command: float) -> int | None:
        """SAVE or STOP: hand in every unroll in flight, report, and wait for the release;
        then join the checkpoint (returns None) or end (returns the exit code)."""
        timing.switch("send")
        comm.poll_until(lambda: self._take_weights() or (
            True if all(r is None or comm.test([r]) for r in self.sends) else None),
            what=f"its learner (rank {self.learner}) to take its last unrolls",
            patience=comm.ON_LEAD)
        self.sends = [None] * len(self.sends)
        comm.send(self.group, np.array([self.sent], dtype=np.float64), 0, tag=DRAINED_TAG,
                  what="its learner to take its report", peer=self.learner,
                  patience=comm.ON_LEAD)
        self.control_req = comm.irecv(self.group, self.control, 0, tag=CONTROL_TAG)
        timing.switch("wait_weights")
        self._wait(lambda: False, "its learner's release")
        # every weights message the learner sent is taken in: nothing stays in flight
        sent_weights = int(self.control[2])
        self._wait(lambda: self.weights_received >= sent_weights and self.incoming is None,
                   "the last weights from its learner", commands=False)
        if command == SAVE:
            timing.switch("checkpoint")
            self.checkpointer.save({"role": "actor", "collector": self.collector.state_dict(),
                                    "sent": self.sent})
            self.control_req = comm.irecv(self.group, self.control, 0, tag=CONTROL_TAG)
            return None
        return int(self.control[1])


def run_actor(setup: RunSetup, comms: comm.RoleComms, checkpointer: Checkpointer,
              resume: dict | None = None) -> int:
    return StreamingActor(setup, comms, checkpointer, resume).run()
