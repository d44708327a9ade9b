"""An A3C worker's gradient: the clipped A2C gradient of its own rollout, on its copy of the
weights (``mpirl.algos.a2c.loss``)."""
from __future__ import annotations

from mpirl.acting.messages import PackedArrays
from mpirl.algos.a2c.loss import A2C
from mpirl.algos.api import Worker, WorkerContext
from mpirl.algos.onpolicy import rollout_keys


class A3CWorker(Worker):
    stat_keys = A2C.STAT_KEYS

    def __init__(self, ctx: WorkerContext):
        super().__init__(ctx)
        self.grads = ctx.averager(ctx.policy.parameters())
        self.grad = self.grads.flat.numpy()
        self.algo = A2C(ctx.cfg, ctx.policy, self.grads, optimizer=None)

    def gradient(self, message: PackedArrays) -> dict:
        return self.algo.gradient({k: message[k] for k in rollout_keys(message)})
