"""Soft actor-critic (Haarnoja et al. 2018, arXiv:1801.01290, arXiv:1812.05905) on the
distributed replay: actors act with the squashed Gaussian policy (uniformly at random for the
first --learning-starts steps) and send chunks of replay rows to their learner; each learner
keeps a replay shard and samples its part of every minibatch; the learners average the
gradients of the policy, the twin critics and the temperature with one allreduce per update.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos.actor_critic import EntropyOptions
from mpirl.algos.offpolicy import continuous
from mpirl.algos.registry import register
from mpirl.config.fields import option, require


@dataclass
class SACOptions:
    """SAC"""

    fixed_ent_coef: bool = option(False, "Hold the temperature alpha at --ent-coef instead of "
                                  "tuning it toward --target-entropy.")
    target_entropy: float | None = option(
        None, "Entropy the tuned temperature aims the policy at; unset = -(action "
        "dimensions).", bounds="(-inf, inf)")

    @staticmethod
    def validate(cfg) -> None:
        require(cfg.fixed_ent_coef or cfg.ent_coef > 0,
                f"--ent-coef {cfg.ent_coef:g} cannot start a tuned temperature (it is tuned in "
                f"log space): give a positive value, or --fixed-ent-coef")


def _collector(ctx):
    return continuous.collector(ctx, noise=0.0)  # the policy samples its own exploration


ALGORITHM = register(continuous.declare(
    "sac", "soft actor-critic (Box actions) on distributed replay",
    options=(SACOptions, EntropyOptions), defaults={"ent_coef": 1.0},
    policy=continuous.stochastic_policy, collector=_collector,
    trainer="mpirl.algos.sac.trainer:SACTrainer"))
