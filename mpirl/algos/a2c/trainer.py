"""A2C on a synchronous learner: one averaged update per iteration on the rollouts just
collected with the current weights."""
from __future__ import annotations

from mpirl.algos.a2c.loss import A2C
from mpirl.algos.onpolicy import OnPolicyTrainer
from mpirl.algos.optim import make_optimizer
from mpirl.runtime import timing


class A2CTrainer(OnPolicyTrainer):
    stat_keys = A2C.STAT_KEYS

    def __init__(self, ctx):
        super().__init__(ctx)
        params = ctx.policy.parameters
        self.averager = ctx.averager(params())
        self.optimizer = make_optimizer(ctx.cfg, params())
        self.algo = A2C(ctx.cfg, ctx.policy, self.averager, self.optimizer)

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
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])
