"""D4PG (Barth-Maron et al. 2018, arXiv:1804.08617) on the distributed replay: actors act with
the deterministic policy plus Gaussian noise, each with its own noise scale, and send chunks
of replay rows to their learner; the learners train a categorical distributional critic on
n-step returns (optionally from prioritized replay) and the policy on the critic's mean,
averaging all gradients with one allreduce per update.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos.offpolicy import continuous
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


def _collector(ctx):
    return continuous.collector(ctx, noise=actor_noise(ctx.cfg, ctx.index, ctx.count))


# D4PG's paper: 5-step returns; a first 1,000 random steps and more noise than TD3's
ALGORITHM = register(continuous.declare(
    "d4pg", "distributed distributional DDPG (Box actions) on distributed replay",
    options=(D4PGOptions, continuous.NoiseOptions),
    defaults={"n_step": 5, "learning_starts": 1_000, "action_noise": 0.3},
    policy=continuous.deterministic_policy, collector=_collector,
    trainer="mpirl.algos.d4pg.trainer:D4PGTrainer"))
