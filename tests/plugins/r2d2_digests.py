"""R2D2 whose learners write a digest of their Q-network, target network and optimizer after
every update (one line per update in ``digests-<rank>.txt`` of the run directory), for the
test of model averaging. Built on the registered R2D2 declaration alone."""
from __future__ import annotations

import dataclasses

import torch

from mpirl.algos.r2d2 import ALGORITHM
from mpirl.algos.r2d2.trainer import R2D2Trainer
from mpirl.algos.registry import register
from plugins import digest, learner_log


class DigestingTrainer(R2D2Trainer):
    def __init__(self, ctx):
        super().__init__(ctx)
        self._out = learner_log(ctx, "digests")

    def after_update(self) -> None:
        super().after_update()
        moments = [v for v in self.optimizer.state_dict().values() if torch.is_tensor(v)]
        parts = [self.ctx.policy_params.vector, *self.shared_tensors(), *moments]
        self._out.write(f"{self.updates} {digest(parts)}\n")
        self._out.flush()


register(dataclasses.replace(ALGORITHM, name="r2d2_digests", trainer=DigestingTrainer))
