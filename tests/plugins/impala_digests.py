"""IMPALA whose learners write a digest of their weights after every update (one line per
update in ``weights-<rank>.txt`` of the run directory), for the test that learners stay
identical while their actors run freely. Built on the registered IMPALA declaration alone."""
from __future__ import annotations

import dataclasses

from mpirl.algos.impala import ALGORITHM
from mpirl.algos.impala.trainer import ImpalaTrainer
from mpirl.algos.registry import register
from plugins import digest, learner_log


class DigestingTrainer(ImpalaTrainer):
    def __init__(self, ctx):
        super().__init__(ctx)
        self._out = learner_log(ctx, "weights")

    def train(self, progress: float) -> list[dict]:
        stats = super().train(progress)
        self._out.write(f"{self.updates} {digest([self.ctx.policy_params.vector])}\n")
        self._out.flush()
        return stats


register(dataclasses.replace(ALGORITHM, name="impala_digests", trainer=DigestingTrainer))
