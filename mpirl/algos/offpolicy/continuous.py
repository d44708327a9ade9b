"""What the off-policy continuous-control algorithms (SAC, TD3, D4PG) share: their common
options and declaration (Box actions only), the actors' exploration, and
in ``mpirl.algos.offpolicy.continuous_trainer`` ``ActorCriticReplayTrainer``, a replay learner
with a policy, critics, their target networks and their optimizers.

Every network's gradient goes into one flat buffer and is averaged over the learners with one
allreduce per update, so every learner stays identical. Each network has its own optimizer
over its slice of that buffer (one fused step each), and its target follows it by Polyak
averaging (one in-place operation per network).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mpirl.acting.collect import TransitionCollector
from mpirl.acting.envs import EnvSpec
from mpirl.acting.messages import Fields, transition_fields
from mpirl.algos.api import SYNCHRONOUS, Algorithm, EveryUpdates
from mpirl.algos.offpolicy.options import ReplayOptions, check_replay, replay_startup
from mpirl.config.fields import option
from mpirl.config.general import MinibatchOptions

if TYPE_CHECKING:
    from mpirl.nets.continuous import ContinuousPolicy


@dataclass
class ContinuousOptions:
    """continuous-control actor-critics"""

    tau: float = option(0.005, "Polyak averaging rate of the target networks: target <- "
                        "(1 - tau) target + tau online.", bounds="(0, 1]")


@dataclass
class NoiseOptions:
    """exploration noise of deterministic policies"""

    action_noise: float = option(
        0.1, "Standard deviation of the Gaussian noise actors add to their actions (actions "
        "scaled to [-1, 1]).", bounds="[0, inf)")


# SB3's defaults for its SAC and TD3 (one update of 256 samples per env step, a replay of a
# million transitions, a constant learning rate, no gradient clipping), with mpirl's chunks
# (--n-steps rows from one env per acting rank) and weight publication
DEFAULTS = {"total_steps": 100_000, "envs_per_actor": 1, "n_steps": 8, "optimizer": "adam",
            "lr": 3e-4, "lr_schedule": "constant", "hidden_sizes": [256, 256],
            "activation": "relu", "max_grad_norm": 0.0, "eval_every": 5_000,
            "log_every": 5_000, "batch_size": 256, "replay_size": 1_000_000,
            "replay_ratio": 256.0, "learning_starts": 100, "n_step": 1, "weights_every": 4}


def declare(name: str, description: str, options: tuple, defaults: dict, policy, collector,
            trainer) -> Algorithm:
    """The declaration of an off-policy continuous-control algorithm: its own option groups
    (then the shared ones), its defaults over ``DEFAULTS``, policy, collector and trainer; the
    rest (replay, checks, messages, weight publication) is common to all of them."""
    return Algorithm(
        name=name, description=description, execution=SYNCHRONOUS, model_averaging=True,
        options=(*options, ContinuousOptions, ReplayOptions, MinibatchOptions),
        defaults={**DEFAULTS, **defaults}, policy=policy, collector=collector,
        message=message, trainer=trainer,
        cheaper_updates="a lower --replay-ratio or a larger --batch-size makes fewer updates",
        publication=lambda cfg: EveryUpdates(cfg.weights_every),
        check=check_replay, startup=replay_startup,
        actions=("box",))


# ---------------------------------------------------------------------- acting
def stochastic_policy(cfg, env: EnvSpec) -> ContinuousPolicy:
    from mpirl.nets.continuous import ContinuousPolicy
    return ContinuousPolicy(env, list(cfg.hidden_sizes), cfg.activation, stochastic=True)


def deterministic_policy(cfg, env: EnvSpec) -> ContinuousPolicy:
    from mpirl.nets.continuous import ContinuousPolicy
    return ContinuousPolicy(env, list(cfg.hidden_sizes), cfg.activation, stochastic=False)


class GaussianExploration:
    """The actions an acting rank takes (``TransitionCollector``'s choice): uniformly random
    in [-1, 1]^A until the run has taken --learning-starts steps, then the policy's (sampled,
    for a stochastic policy) plus Gaussian noise of standard deviation ``noise``, clipped to
    [-1, 1]."""

    def __init__(self, policy: ContinuousPolicy, rng: np.random.Generator, noise: float,
                 random_until: float):
        self.policy, self.rng, self.noise = policy, rng, noise
        self.random_until = random_until  # the fraction of the budget acted at random
        self.to_env = policy.to_env

    def __call__(self, obs: np.ndarray, progress: float) -> np.ndarray:
        shape = (len(obs), self.policy.n_actions)
        if progress < self.random_until:
            return self.rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        a = self.policy.act(obs, self.rng)
        if self.noise > 0:
            a = np.clip(a + self.noise * self.rng.standard_normal(shape, dtype=np.float32),
                        -1.0, 1.0)
        return a


def collector(ctx, noise: float) -> TransitionCollector:
    """Chunks of replay rows acted with ``noise`` on top of the policy."""
    cfg = ctx.cfg
    random_until = cfg.learning_starts / cfg.total_steps if cfg.total_steps else 0.0
    choose = GaussianExploration(ctx.policy, ctx.rng, noise, random_until)
    return TransitionCollector(ctx.envs, cfg.n_steps, ctx.rng, choose)


def message(cfg, env: EnvSpec) -> Fields:
    return transition_fields(env, cfg.n_steps, cfg.envs_per_actor)
