"""The streaming learner: the synchronous learner loop, fed by actors that do not wait."""
from __future__ import annotations

from mpirl.execution.streaming.source import SelfActingBatch, StreamingActors
from mpirl.execution.sync.learner import Learner
from mpirl.execution.sync.sources import ExperienceSource


class StreamingLearner(Learner):
    def make_source(self, resume: dict | None) -> ExperienceSource:
        setup, comms = self.setup, self.comms
        if setup.layout.self_acting:
            collector = setup.make_collector(self.acting_policy, comms.rank, resume)
            return SelfActingBatch(setup, collector, self._sync_host_weights)
        return StreamingActors(setup, comms, self.weights, self._sync_host_weights)
