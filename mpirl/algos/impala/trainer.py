"""IMPALA on a learner of the streaming model: one averaged update per batch of unrolls, in
whatever order and from whichever actors they arrived. Its update count versions the weights
actors act with (the policy lag counts in it), and goes into checkpoints."""
from __future__ import annotations

import numpy as np

from mpirl.acting.messages import ON_POLICY_KEYS, PackedArrays
from mpirl.algos import rnd_learning
from mpirl.algos.impala.loss import Impala
from mpirl.algos.onpolicy import OneUpdateTrainer, rollout_keys
from mpirl.algos.optim import StepTogether
from mpirl.algos.rnd_learning import RND
from mpirl.runtime import timing

KEYS = ON_POLICY_KEYS + ("logp",)


class ImpalaTrainer(OneUpdateTrainer):
    stat_keys = Impala.STAT_KEYS

    def __init__(self, ctx):
        super().__init__(ctx)
        # one update per batch, at hundreds a second on small networks: flat optimizers (the
        # policy's, and RND's predictor's with --intrinsic rnd, over one gradient buffer)
        self.rnd, self.averager, self._optimizers = rnd_learning.learner_parts(ctx)
        self.optimizer = self._optimizers[0]
        steps = self.optimizer if self.rnd is None else StepTogether(self._optimizers)
        self.algo = Impala(ctx.cfg, ctx.policy, self.averager, steps, intrinsic=self.rnd)
        self.stat_keys = self.algo.STAT_KEYS

    def optimizers(self) -> list:
        return self._optimizers

    def ingest(self, messages: list[PackedArrays]) -> None:
        # copied: the unrolls' buffers take the next arrivals while this learner trains
        for key in rollout_keys(messages[0], KEYS):
            self.batch[key] = np.concatenate([m[key] for m in messages], axis=1)
        if self.rnd is not None:
            self.rnd.take_in(messages)

    def train(self, progress: float) -> list[dict]:
        if self.rnd is not None:
            timing.switch("inference")
            self.rnd.prepare(self.batch)
        return super().train(progress)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*super().columns, *(RND.COLUMNS if self.rnd is not None else ()))

    def row(self, seconds: float) -> dict:
        row = super().row(seconds)
        if self.rnd is not None:
            row.update(self.rnd.row())
        return row

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.rnd is not None:
            state["rnd"] = self.rnd.state_dict()
        return state

    def own_state_dict(self) -> dict:
        state = super().own_state_dict()
        if self.rnd is not None:
            state["rnd"] = self.rnd.own_state_dict()
        return state

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if self.rnd is not None:
            self.rnd.load_state_dict((shared or {}).get("rnd"), (own or {}).get("rnd"))
