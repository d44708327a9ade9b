"""D4PG (Barth-Maron et al. 2018, arXiv:1804.08617) on the distributed replay: actors act with
the deterministic policy plus Gaussian noise, each with its own noise scale, and send chunks
of replay rows to their learner; the learners train a categorical distributional critic on
n-step returns (optionally from prioritized replay) and the policy on the critic's mean,
averaging all gradients with one allreduce per update.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos.api import SYNCHRONOUS, Algorithm, EveryUpdates
from mpirl.algos.d4pg.trainer import D4PGTrainer
from mpirl.algos.offpolicy import ReplayOptions, replay_startup
from mpirl.algos.offpolicy import continuous
from mpirl.algos.optim import MinibatchOptions
from mpirl.algos.registry import register
from mpirl.config.fields import option, require


@dataclass
class D4PGOptions:
    """D4PG"""

    atoms: int = option(51, "Atoms of the categorical critic's support.", bounds="[2, inf)")
    v_min: float = option(-150.0, "Smallest return on the critic's support.",
                          bounds="(-inf, inf)")
    v_max: float = option(150.0, "Largest return on the critic's support.",
                          bounds="(-inf, inf)")
    noise_spread: float = option(
        8.0, "Acting rank i of N explores with noise --action-noise / noise-spread ** (i/(N-1)): "
        "from --action-noise on the first down to --action-noise / noise-spread on the last.",
        bounds="[1, inf)")

    @staticmethod
    def validate(cfg) -> None:
        require(cfg.v_min < cfg.v_max,
                f"--v-min {cfg.v_min:g} must be below --v-max {cfg.v_max:g}")


def actor_noise(cfg, index: int, count: int) -> float:
    """The exploration noise of acting rank ``index`` of ``count``: spread geometrically over
    the fleet, as Ape-X spreads epsilon."""
    if count == 1:
        return cfg.action_noise
    return cfg.action_noise / cfg.noise_spread ** (index / (count - 1))


# D4PG's paper: 5-step returns, 51 atoms; widths and rates as SB3's DDPG family
DEFAULTS = {"total_steps": 100_000, "envs_per_actor": 1, "n_steps": 8, "optimizer": "adam",
            "lr": 3e-4, "lr_schedule": "constant", "hidden_sizes": [256, 256],
            "activation": "relu", "max_grad_norm": 0.0, "eval_every": 5_000,
            "log_every": 5_000, "batch_size": 256, "replay_size": 1_000_000,
            "replay_ratio": 256.0, "learning_starts": 1_000, "n_step": 5, "weights_every": 4,
            "action_noise": 0.3}


def _collector(ctx):
    return continuous.collector(ctx, noise=actor_noise(ctx.cfg, ctx.index, ctx.count))


ALGORITHM = register(Algorithm(
    name="d4pg",
    description="distributed distributional DDPG (Box actions) on distributed replay",
    execution=SYNCHRONOUS,
    options=(D4PGOptions, continuous.NoiseOptions, continuous.ContinuousOptions,
             ReplayOptions, MinibatchOptions),
    defaults=DEFAULTS,
    policy=continuous.deterministic_policy,
    collector=_collector,
    message=continuous.message,
    trainer=D4PGTrainer,
    cheaper_updates="a lower --replay-ratio or a larger --batch-size makes fewer updates",
    publication=lambda cfg: EveryUpdates(cfg.weights_every),
    check=continuous.check_box,
    startup=replay_startup,
))
