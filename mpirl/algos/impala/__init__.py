"""IMPALA: importance-weighted actor-learner architecture (Espeholt et al. 2018,
arXiv:1802.01561), on the streaming execution model.

Actors never wait for their learner: they act with the newest weights they have and send
fixed-length unrolls with the behaviour policy's log-probabilities. Learners train on batches
of whatever unrolls arrived, correct for the policy lag with V-trace
(``mpirl.algos.returns.vtrace``), and average gradients with one allreduce per update.
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.acting.messages import rollout_fields
from mpirl.algos import actor_critic, rnd
from mpirl.algos.api import Algorithm
from mpirl.algos.registry import register
from mpirl.config.fields import ConfigError, option
from mpirl.execution import STREAMING


@dataclass
class ImpalaOptions:
    """IMPALA (V-trace)"""

    rho_bar: float = option(1.0, "V-trace: clip the importance weights of the value targets "
                            "at this (rho-bar).", bounds="(0, inf)")
    c_bar: float = option(1.0, "V-trace: clip the trace-cutting weights at this (c-bar; at "
                          "most rho-bar in the paper).", bounds="(0, inf)")
    pg_rho_bar: float = option(1.0, "V-trace: clip the importance weights of the policy "
                               "gradient at this.", bounds="(0, inf)")


# CartPole-v1 settings: every actor steps 32 envs in unrolls of 8 steps, and a learner trains
# on 2 unrolls (512 steps) per update with RMSProp (the general optimizer) at 3e-3. Adam's
# larger steps on stale unrolls were the fragile part: at 2e-3 with 2,048 steps per update, 2
# to 5 of 6 seeds reached 475 in 300k steps, against 6 of 6 with these settings.
DEFAULTS = {"envs_per_actor": 32, "n_steps": 8, "lr": 3e-3}


def message(cfg, env):
    """An on-policy rollout with the behaviour policy's log-probability of each action (and
    RND's fields with --intrinsic rnd, the core's state with --recurrent)."""
    return {**rollout_fields(env, cfg.n_steps, cfg.envs_per_actor, logp=True),
            **rnd.message_fields(cfg, env), **actor_critic.recurrent_fields(cfg, env)}


def validate(cfg) -> None:
    if cfg.normalize_reward:
        raise ConfigError("--normalize-reward does not apply to impala: a batch mixes "
                          "unrolls of any actor's envs, so there is no running return per env "
                          "to scale by; use --clip-rewards for games with large rewards")


ALGORITHM = register(Algorithm(
    name="impala",
    description="IMPALA: asynchronous actors, V-trace learners",
    execution=STREAMING,
    model_averaging=True,
    options=(ImpalaOptions, actor_critic.ActorCriticOptions, actor_critic.EntropyOptions,
             actor_critic.RolloutLearnerOptions, actor_critic.RecurrentOptions,
             actor_critic.CriticCoreOptions, rnd.IntrinsicOptions),
    defaults=DEFAULTS,
    policy=actor_critic.policy,
    collector=actor_critic.collector,
    message=message,
    trainer="mpirl.algos.impala.trainer:ImpalaTrainer",
    validate=validate,
    check=actor_critic.check_precision,
    startup=rnd.startup,
    cheaper_updates="more steps per update (--batch-unrolls, --n-steps, --envs-per-actor) "
    "spread its fixed cost",
))
