"""A2C: synchronous advantage actor-critic (Mnih et al. 2016, arXiv:1602.01783, in the
synchronous form of OpenAI Baselines).

Learners average the gradient of the A2C loss (policy gradient with n-step or GAE advantages,
value error, entropy bonus) over all actors' rollouts with one allreduce, so every learner
applies the same update; actors then act with the new weights. With --straggler-cutoff the
update takes rollouts cut short (each bootstrapped from where it stopped).
"""
from __future__ import annotations

from mpirl.algos import actor_critic
from mpirl.algos.api import SYNCHRONOUS, Algorithm
from mpirl.algos.registry import register

ALGORITHM = register(Algorithm(
    name="a2c",
    description="synchronous advantage actor-critic",
    execution=SYNCHRONOUS,
    model_averaging=True,
    cut_rollouts=True,
    options=(actor_critic.ActorCriticOptions, actor_critic.EntropyOptions,
             actor_critic.RolloutLearnerOptions, actor_critic.RecurrentOptions,
             actor_critic.CriticCoreOptions),
    policy=actor_critic.policy,
    collector=actor_critic.collector,
    message=actor_critic.rollout_message,
    trainer="mpirl.algos.a2c.trainer:A2CTrainer",
    cheaper_updates="more samples per update (--envs-per-actor, --n-steps) spread its fixed "
    "cost",
    check=actor_critic.check_precision,
))
