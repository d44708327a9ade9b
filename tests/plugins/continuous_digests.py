"""SAC, TD3 and D4PG whose learners write a digest of every network and optimizer after every
update (one line per update in ``digests-<rank>.txt`` of the run directory), for the test that
all learners stay identical. Built on the registered declarations alone."""
from __future__ import annotations

import dataclasses

import torch

from mpirl.algos.d4pg import ALGORITHM as D4PG
from mpirl.algos.registry import register
from mpirl.algos.sac import ALGORITHM as SAC
from mpirl.algos.td3 import ALGORITHM as TD3
from plugins import digest, learner_log


def digesting(trainer_class):
    class Digesting(trainer_class):
        def __init__(self, ctx):
            super().__init__(ctx)
            self._out = learner_log(ctx, "digests")

        def after_update(self) -> None:
            super().after_update()
            state = self.state_dict()
            parts = [self.ctx.policy_params.vector, state["critics"], *state["targets"],
                     *state.get("extras", [])]
            for opt in state["optimizers"].values():  # a flat Adam: its steps and moments
                parts += [torch.tensor(float(opt["steps"])), opt["exp_avg"], opt["exp_avg_sq"]]
            self._out.write(f"{self.updates} {len(parts)} {digest(parts)}\n")
            self._out.flush()

    return Digesting


for algorithm in (SAC, TD3, D4PG):
    register(dataclasses.replace(algorithm, name=f"{algorithm.name}_digests",
                                 trainer=digesting(algorithm.trainer_class)))
