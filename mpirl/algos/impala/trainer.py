"""IMPALA on a learner of the streaming model: one averaged update per batch of unrolls, in
whatever order and from whichever actors they arrived. Its update count versions the weights
actors act with (the policy lag counts in it), and goes into checkpoints."""
from __future__ import annotations

import numpy as np

from mpirl.acting.messages import ON_POLICY_KEYS, PackedArrays
from mpirl.algos.impala.loss import Impala
from mpirl.algos.onpolicy import OneUpdateTrainer
from mpirl.algos.optim import flat_optimizer

KEYS = ON_POLICY_KEYS + ("logp",)


class ImpalaTrainer(OneUpdateTrainer):
    stat_keys = Impala.STAT_KEYS

    def __init__(self, ctx):
        super().__init__(ctx)
        self.averager = ctx.averager(ctx.policy.parameters())
        # one update per batch, at hundreds a second on small networks: a flat optimizer
        self.optimizer = flat_optimizer(ctx.cfg, ctx.policy_params, self.averager)
        self.algo = Impala(ctx.cfg, ctx.policy, self.averager, self.optimizer)

    def ingest(self, messages: list[PackedArrays]) -> None:
        # copied: the unrolls' buffers take the next arrivals while this learner trains
        for key in KEYS:
            self.batch[key] = np.concatenate([m[key] for m in messages], axis=1)
