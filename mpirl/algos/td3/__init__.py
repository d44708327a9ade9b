"""TD3 (Fujimoto et al. 2018, arXiv:1802.09477) on the distributed replay: actors act with the
deterministic policy plus Gaussian noise (uniformly at random for the first --learning-starts
steps) and send chunks of replay rows to their learner; the learners train twin critics every
update and the policy and the target networks every --policy-delay updates, averaging all
gradients with one allreduce per update.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos.api import SYNCHRONOUS, Algorithm, EveryUpdates
from mpirl.algos.offpolicy import ReplayOptions, replay_startup
from mpirl.algos.offpolicy import continuous
from mpirl.algos.optim import MinibatchOptions
from mpirl.algos.registry import register
from mpirl.algos.td3.trainer import TD3Trainer
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


# SB3's TD3 defaults, except the actors' chunks (--n-steps) and the weight publication
DEFAULTS = {"total_steps": 100_000, "envs_per_actor": 1, "n_steps": 8, "optimizer": "adam",
            "lr": 1e-3, "lr_schedule": "constant", "hidden_sizes": [400, 300],
            "activation": "relu", "max_grad_norm": 0.0, "eval_every": 5_000,
            "log_every": 5_000, "batch_size": 256, "replay_size": 1_000_000,
            "replay_ratio": 256.0, "learning_starts": 100, "n_step": 1, "weights_every": 4}


def _collector(ctx):
    return continuous.collector(ctx, noise=ctx.cfg.action_noise)


ALGORITHM = register(Algorithm(
    name="td3",
    description="twin delayed DDPG (Box actions) on distributed replay",
    execution=SYNCHRONOUS,
    options=(TD3Options, continuous.NoiseOptions, continuous.ContinuousOptions, ReplayOptions,
             MinibatchOptions),
    defaults=DEFAULTS,
    policy=continuous.deterministic_policy,
    collector=_collector,
    message=continuous.message,
    trainer=TD3Trainer,
    cheaper_updates="a lower --replay-ratio or a larger --batch-size makes fewer updates",
    publication=lambda cfg: EveryUpdates(cfg.weights_every),
    check=continuous.check_box,
    startup=replay_startup,
))
