"""A2C on a synchronous learner: one averaged update per iteration on the rollouts just
collected with the current weights."""
from __future__ import annotations

from mpirl.algos.a2c.loss import A2C
from mpirl.algos.onpolicy import OneUpdateTrainer
from mpirl.algos.optim import flat_optimizer


class A2CTrainer(OneUpdateTrainer):
    stat_keys = A2C.STAT_KEYS

    def __init__(self, ctx):
        super().__init__(ctx)
        params = list(ctx.policy.parameters())
        trained = sum(p.numel() for p in params if p.requires_grad)  # statistics come last
        self.averager = ctx.averager(params)
        self.optimizer = flat_optimizer(ctx.cfg, ctx.policy_params, self.averager, (0, trained))
        self.algo = A2C(ctx.cfg, ctx.policy, self.averager, self.optimizer)
