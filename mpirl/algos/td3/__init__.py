"""TD3 (Fujimoto et al. 2018, arXiv:1802.09477) on the distributed replay: actors act with the
deterministic policy plus Gaussian noise (uniformly at random for the first --learning-starts
steps) and send chunks of replay rows to their learner; the learners train twin critics every
update and the policy and the target networks every --policy-delay updates, averaging all
gradients with one allreduce per update.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos.offpolicy import continuous
from mpirl.algos.registry import register
from mpirl.config.fields import option


@dataclass
class TD3Options:
    """TD3"""

    policy_delay: int = option(2, "Update the policy and the target networks every this many "
                               "critic updates.", bounds="[1, inf)")
    target_noise: float = option(0.2, "Standard deviation of the target policy smoothing "
                                 "noise (actions scaled to [-1, 1]).", bounds="[0, inf)")
    target_noise_clip: float = option(0.5, "Clip the target smoothing noise to +-this.",
                                      bounds="[0, inf)")


def _collector(ctx):
    return continuous.collector(ctx, noise=ctx.cfg.action_noise)


# SB3's TD3: 400x300 networks, learning rate 1e-3
ALGORITHM = register(continuous.declare(
    "td3", "twin delayed DDPG (Box actions) on distributed replay",
    options=(TD3Options, continuous.NoiseOptions),
    defaults={"lr": 1e-3, "hidden_sizes": [400, 300]},
    policy=continuous.deterministic_policy, collector=_collector,
    trainer="mpirl.algos.td3.trainer:TD3Trainer"))
