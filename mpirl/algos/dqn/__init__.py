"""DQN with distributed replay, Ape-X style (Horgan et al. 2018, arXiv:1803.00933): actors act
epsilon-greedily, each with its own rate, and send chunks of replay rows to their learner; each
learner keeps a replay shard, samples its part of every minibatch, and the learners average
gradients of the double-DQN loss with one allreduce. Actors collect the next chunks while the
learners train, and get fresh weights every --weights-every updates.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from mpirl.acting.collect import TransitionCollector
from mpirl.acting.envs import EnvSpec
from mpirl.acting.messages import Fields, transition_fields
from mpirl.algos.api import SYNCHRONOUS, Algorithm, EveryUpdates
from mpirl.algos.dqn.exploration import EpsilonGreedy, actor_epsilon
from mpirl.algos.offpolicy import ReplayOptions, check_replay, replay_startup
from mpirl.config.general import MinibatchOptions
from mpirl.algos.registry import register
from mpirl.config.fields import option


@dataclass
class DQNOptions:
    """DQN"""

    target_update: int = option(100, "Copy the online network to the target every this many "
                                "updates.", bounds="[1, inf)")
    dueling: bool = option(False, "Dueling value/advantage heads.")
    double_q: bool = option(True, "Double DQN: the online network picks the next action and "
                            "the target network values it; --no-double-q: the target "
                            "network's own maximum (Mnih et al. 2015; SB3's DQN), which saves "
                            "DQN one forward pass per update.")
    exploration: str = option(
        "apex", "Epsilon per acting rank i of N: apex = eps-base ** (1 + eps-alpha i/(N-1)) "
        "(Ape-X), linear = eps-final for all; both annealed from 1.0 over "
        "--exploration-fraction of the budget.", choices=("apex", "linear"))
    exploration_fraction: float = option(0.1, "Fraction of the budget over which epsilon "
                                         "anneals from 1.0 to its final value.", bounds="[0, 1]")
    eps_final: float = option(0.05, "Final epsilon with --exploration linear.", bounds="[0, 1]")
    eps_base: float = option(0.4, "Ape-X base epsilon.", bounds="[0, 1]")
    eps_alpha: float = option(7.0, "Ape-X epsilon exponent spread.", bounds="[0, inf)")


DEFAULTS = {"total_steps": 200_000, "envs_per_actor": 4, "n_steps": 16, "optimizer": "adam",
            "lr": 1e-3, "lr_schedule": "linear", "hidden_sizes": [128, 128],
            "activation": "relu", "max_grad_norm": 10.0, "eval_every": 5_000,
            "log_every": 5_000}


# ---------------------------------------------------------------------- acting
def _policy(cfg, env: EnvSpec):
    from mpirl.algos.dqn.qnetwork import QNetwork
    return QNetwork(env, list(cfg.hidden_sizes), cfg.activation, cfg.dueling)


def _collector(ctx) -> TransitionCollector:
    epsilon_at = functools.partial(actor_epsilon, ctx.cfg, index=ctx.index, count=ctx.count)
    choose = EpsilonGreedy(ctx.policy, ctx.rng, ctx.env.n_actions, epsilon_at)
    return TransitionCollector(ctx.envs, ctx.cfg.n_steps, ctx.rng, choose)


def _message(cfg, env: EnvSpec) -> Fields:
    return transition_fields(env, cfg.n_steps, cfg.envs_per_actor)


ALGORITHM = register(Algorithm(
    name="dqn",
    description="double DQN on distributed (optionally prioritized) replay",
    execution=SYNCHRONOUS,
    model_averaging=True,
    options=(DQNOptions, ReplayOptions, MinibatchOptions),
    defaults=DEFAULTS,
    policy=_policy,
    collector=_collector,
    message=_message,
    trainer="mpirl.algos.dqn.trainer:DQNTrainer",
    cheaper_updates="a larger --batch-size makes fewer updates at the same --replay-ratio",
    publication=lambda cfg: EveryUpdates(cfg.weights_every),
    check=check_replay,
    actions=("discrete",),
    startup=replay_startup,
))
