"""PPO: proximal policy optimization with the clipped objective (Schulman et al. 2017,
arXiv:1707.06347) on synchronous learners.

Each iteration the learners make --n-epochs passes over the rollout batch in minibatches of
--batch-size; every minibatch gradient is averaged over the learners, so all of them take the same
steps. ``--intrinsic rnd`` adds random network distillation's exploration bonus
(``mpirl.algos.rnd``). Its defaults are rl-baselines3-zoo's tuned CartPole settings per acting rank,
with the clip range halved (``DEFAULTS``).
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos import actor_critic, rnd
from mpirl.algos.api import SYNCHRONOUS, Algorithm
from mpirl.config.general import MinibatchOptions
from mpirl.algos.registry import register
from mpirl.algos.rnd import IntrinsicOptions
from mpirl.config.fields import ConfigError, option


@dataclass
class PPOOptions:
    """PPO"""

    n_epochs: int = option(20, "Passes over each rollout batch.", bounds="[1, inf)")
    clip_range: float = option(
        0.1, "Clipping range of the probability ratio (rl-baselines3-zoo's CartPole setting "
        "is 0.2; see DEFAULTS).", bounds="(0, inf)")
    clip_schedule: str = option("linear", "Clip-range schedule over the budget.",
                                choices=("constant", "linear"))
    clip_range_vf: float | None = option(
        None, "Clip the value prediction to this distance from the rollout's value; unset = "
        "no value clipping.", bounds="(0, inf)")
    target_kl: float | None = option(
        None, "End an iteration's epochs early once the approximate KL to the rollout policy, "
        "averaged over the learners, exceeds 1.5 x this; unset = never.", bounds="(0, inf)")
    normalize_advantage: bool = option(True, "Normalize advantages by the mean and std of the "
                                       "global batch (over all learners).")
    autograd: bool = option(
        False, "Compute the loss gradient with torch autograd. Without it, CPU learners of MLP "
        "policies use the backward pass written out, which gives the same numbers in a "
        "fraction of the per-operation cost; autograd is the reference (and the way for a "
        "changed loss).")


# With PPOOptions' own defaults, the tuned CartPole settings of rl-baselines3-zoo, per acting
# rank (8 envs x 32 steps, minibatches of 256, 20 epochs), with the clip range halved: with
# several acting ranks an iteration takes (batch / batch_size) x n_epochs minibatch steps from
# one rollout, and 0.1 keeps the policy from overshooting once it balances (4 ranks, seeds
# 0-27: 2 runs fell back below 475 after reaching it, against 10 with 0.2, and the first 475
# came as early). A recurrent MLP policy shares one LSTM between its heads: on
# mpirl/CartPoleNoVel-v1 (4 ranks, seeds 0-2) that reached 475 in 30k-75k steps on all three,
# against 50k, 165k and never (peak 431 in 300k) with a separate critic core; PPO's normalized
# advantages keep the value's gradient from dominating the shared core.
DEFAULTS = {"total_steps": 100_000, "envs_per_actor": 8, "n_steps": 32, "gamma": 0.98,
            "gae_lambda": 0.8, "optimizer": "adam", "lr": 1e-3, "lr_schedule": "linear",
            "eval_every": 5_000, "log_every": 5_000, "separate_critic": False}


def minibatches(setup) -> int:
    """Minibatches per epoch: the rollout batch over --batch-size, the same on every learner
    (each splits its own part of the batch that many ways). Raises ConfigError when the
    batch cannot be split so."""
    cfg, per_iter = setup.cfg, setup.steps_per_iteration
    if cfg.batch_size > per_iter:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the rollout batch: --n-steps "
            f"{cfg.n_steps} x --envs-per-actor {cfg.envs_per_actor} x {setup.acting_ranks} "
            f"acting rank(s) = {per_iter}; lower it or collect more per iteration")
    count = per_iter // cfg.batch_size
    smallest = min(setup.layout.acting_ranks_of(r) for r in range(setup.layout.learners))
    if smallest * cfg.n_steps * cfg.envs_per_actor < count:
        raise ConfigError(f"--batch-size {cfg.batch_size} makes {count} minibatches, more "
                          f"than a learner has samples")
    if actor_critic.recurrent(cfg) and smallest * cfg.envs_per_actor < count:
        raise ConfigError(f"--batch-size {cfg.batch_size} makes {count} minibatches, more "
                          f"than a learner has env sequences ({smallest} acting rank(s) x "
                          f"--envs-per-actor {cfg.envs_per_actor}): a recurrent policy's "
                          f"minibatches are whole sequences; raise --batch-size or "
                          f"--envs-per-actor")
    cut = actor_critic.min_rollout_steps(cfg)
    if cut is not None and smallest * cut * cfg.envs_per_actor < count:
        raise ConfigError(f"--batch-size {cfg.batch_size} makes {count} minibatches, more "
                          f"than a learner has samples when its rollouts are cut to "
                          f"--straggler-min-share {cfg.straggler_min_share:g} of --n-steps; "
                          f"raise one of them")
    return count


def _check(setup) -> None:
    actor_critic.check_precision(setup)
    minibatches(setup)



ALGORITHM = register(Algorithm(
    name="ppo",
    description="proximal policy optimization",
    execution=SYNCHRONOUS,
    model_averaging=True,
    cut_rollouts=True,
    options=(PPOOptions, MinibatchOptions, actor_critic.ActorCriticOptions,
             actor_critic.EntropyOptions,
             actor_critic.RolloutLearnerOptions, actor_critic.RecurrentOptions,
             actor_critic.CriticCoreOptions, IntrinsicOptions),
    defaults=DEFAULTS,
    policy=actor_critic.policy,
    collector=actor_critic.collector,
    message=actor_critic.rollout_message,
    trainer="mpirl.algos.ppo.trainer:PPOTrainer",
    cheaper_updates="fewer updates per rollout batch (a larger --batch-size, or fewer "
    "--n-epochs) cut it",
    check=_check,
    startup=rnd.startup,
))
