"""IMPALA on a learner of the streaming model: one averaged update per batch of unrolls, in
whatever order and from whichever actors they arrived."""
from __future__ import annotations

import numpy as np

from mpirl.acting.messages import ON_POLICY_KEYS, PackedArrays
from mpirl.algos.impala.loss import Impala
from mpirl.algos.onpolicy import OnPolicyTrainer
from mpirl.algos.optim import flat_optimizer
from mpirl.runtime import timing

KEYS = ON_POLICY_KEYS + ("logp",)


class ImpalaTrainer(OnPolicyTrainer):
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

    def optimizers(self) -> list:
        return [self.optimizer]

    def train(self, progress: float) -> list[dict]:
        timing.switch("other")
        self.norm.prepare(self.batch)
        timing.switch("gradient")
        stats = self.algo.update(self.batch)
        self.updates += not stats["skipped"]
        self.norm.publish()
        return [stats]

    def state_dict(self) -> dict:
        # the update count versions the weights actors act with: the policy lag counts on
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])
            self.updates = shared.get("updates", 0)
