"""DQN on a replay learner (``mpirl.algos.offpolicy.ReplayTrainer``): one network, its target
copied every --target-update updates, one fused optimizer step per update; the target's
action values of the stored observations cached between copies (``TargetValues``)."""
from __future__ import annotations

import torch

from mpirl.algos.api import LearnerContext
from mpirl.algos.dqn.loss import DQN
from mpirl.algos.dqn.target_values import TargetValues
from mpirl.algos.offpolicy import ReplayTrainer
from mpirl.algos.optim import flat_optimizer
from mpirl.replay import ReplayShard, Sample
from mpirl.runtime import timing


class DQNTrainer(ReplayTrainer):
    stat_keys = DQN.STAT_KEYS

    def __init__(self, ctx: LearnerContext):
        super().__init__(ctx)
        cfg = self.cfg
        self.averager = ctx.averager(ctx.policy.parameters(), share=self.batch / cfg.batch_size)
        # hundreds of small updates a second: one fused optimizer kernel
        self.optimizer = flat_optimizer(cfg, ctx.policy_params, self.averager)
        self.target = ctx.network()
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.algo = DQN(cfg, ctx.policy, self.target, self.averager, self.optimizer)
        self.values = None
        # (--sync average also averages the target networks: their values would go stale)
        if type(self.replay) is ReplayShard and self.averager.average_every is None:
            self.values = TargetValues(self.replay, self.target, ctx.env.n_actions,
                                       cfg.target_update * self.batch)
            self.values.refresh()

    def optimizers(self) -> list:
        return [self.optimizer]

    def shared_tensors(self) -> list:
        return [p.data for p in self.target.parameters()]

    def ingest(self, messages) -> None:
        written = self.replay.written
        super().ingest(messages)
        if self.values is not None:
            self.values.added(self.replay.written - written)

    def update(self, sample: Sample, weighted: bool) -> dict:
        cached = None if self.values is None else self.values.lookup(sample.next_cells)
        return self.algo.update(sample, weighted=weighted, next_target_q=cached)

    def after_update(self) -> None:
        if self.updates % self.cfg.target_update == 0:
            self.algo.sync_target()
            if self.values is not None:
                timing.switch("gradient")  # the target's forward passes, done ahead
                self.values.refresh()
                timing.switch("optimizer")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        params = torch.cat([p.detach().reshape(-1) for p in self.target.parameters()])
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict(),
                "target": params.cpu().clone()}

    def own_state_dict(self) -> dict:
        own = super().own_state_dict()
        if self.values is not None and "replay" in own:
            own["target_values"] = self.values.state_dict()
        return own

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])
            torch.nn.utils.vector_to_parameters(shared["target"].to(self.algo.device),
                                                self.target.parameters())
        if self.values is not None:
            self.values.load_state_dict((own or {}).get("target_values"))
