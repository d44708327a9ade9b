"""What the actor-critic algorithms (A2C, PPO, A3C) share: their option groups, their policy
network, what their acting ranks collect and send (on-policy rollouts, with RND's start when an
algorithm offers ``--intrinsic``), and the start-up check of ``--precision``. Their
learners' common part is ``mpirl.algos.onpolicy``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mpirl.acting.collect import RolloutCollector
from mpirl.acting.envs import EnvSpec, is_atari, is_image
from mpirl.acting.messages import Fields, rollout_fields
from mpirl.algos import rnd
from mpirl.config.fields import ConfigError, option
from mpirl.nets.acting import recurrent_state_rows

if TYPE_CHECKING:
    from mpirl.nets.actor_critic import ActorCritic


@dataclass
class EntropyOptions:
    """entropy"""

    ent_coef: float = option(0.0, "Entropy weight: the entropy bonus of the actor-critics; "
                             "SAC's temperature alpha (its start value when tuned).",
                             bounds="[0, inf)")


@dataclass
class ActorCriticOptions:
    """actor-critic losses, Gaussian actions, Atari training"""

    gae_lambda: float = option(1.0, "GAE lambda; 1.0 gives plain n-step returns.", bounds="[0, 1]")
    vf_coef: float = option(0.5, "Value loss weight.", bounds="[0, inf)")
    log_std_init: float = option(0.0, "Box actions: initial log standard deviation of the "
                                 "Gaussian policy (state-independent, learned).",
                                 bounds="[-20, 20]")
    action_bounds: str = option(
        "clip", "Box actions: clip the Gaussian sample to the action bounds, or squash it with "
        "tanh into them.", choices=("clip", "squash"))
    episodic_life: bool | None = option(
        None, "Treat a lost life as an episode end in the returns (the game goes on); unset = "
        "on for Atari games.")
    clip_rewards: bool | None = option(
        None, "Train on the sign of each reward (logs keep game scores); unset = on for Atari "
        "games.")


@dataclass
class RecurrentOptions:
    """recurrent policies"""

    recurrent: str = option(
        "none", "Core between the policy's encoder (MLP or CNN) and its heads: none = "
        "feed-forward, lstm = an LSTM whose state actors carry across steps and zero at episode "
        "ends; learners replay it over each rollout from the state it started with (PPO's "
        "minibatches are whole env sequences). For partially observed tasks, e.g. "
        "mpirl/CartPoleNoVel-v1.", choices=("none", "lstm"))
    lstm_size: int = option(64, "Units of the LSTM core (--recurrent lstm).",
                            bounds="[1, 4096]")

    @staticmethod
    def validate(cfg) -> None:
        if cfg.recurrent == "none":
            return
        if getattr(cfg, "intrinsic", "none") != "none":
            raise ConfigError(f"--intrinsic {cfg.intrinsic} does not combine with --recurrent "
                              f"{cfg.recurrent}: use a feed-forward policy with RND")
        if getattr(cfg, "straggler_cutoff", 0.0) > 0:
            raise ConfigError(f"--straggler-cutoff does not combine with --recurrent "
                              f"{cfg.recurrent}: recurrent rollouts are replayed whole")


@dataclass
class CriticCoreOptions:
    """recurrent actor-critics"""

    separate_critic: bool = option(
        True, "--recurrent with an MLP policy: the critic has its own encoder and LSTM (with "
        "one core for both heads, the value regression shapes most of it under A2C's and "
        "IMPALA's unnormalized advantages); off = one core for both (PPO's default). The CNN "
        "shares its trunk and core.")


@dataclass
class RolloutLearnerOptions:
    """normalization and CNN precision on synchronous learners"""

    precision: str = option(
        "fp32", "Arithmetic of the CNN trunk (image observations): fp32, bf16 = bfloat16 "
        "autocast of its convolutions and hidden layer, with float32 weights, optimizer and "
        "heads (CNN updates ~2.4x faster on CPUs with AVX512-BF16 or AMX, ~14x slower on "
        "CPUs without; on an H200 GPU 1.0-1.4x slower than fp32, whose convolutions run in "
        "TF32 there), or auto = bf16 on the ranks whose device is a CPU that computes "
        "bfloat16 natively, else fp32.",
        choices=("fp32", "bf16", "auto"))
    normalize_obs: bool = option(False, "Normalize observations by running mean and variance "
                                 "over everything collected; saved with the policy.")
    clip_obs: float = option(10.0, "Clip normalized observations to +-this.", bounds="(0, inf)")
    normalize_reward: bool = option(False, "Scale rewards by the running std of the "
                                    "discounted return (clipped to +-10).")


def recurrent(cfg) -> bool:
    return getattr(cfg, "recurrent", "none") != "none"


def policy(cfg, env: EnvSpec) -> ActorCritic:
    """The actor-critic for ``env``: image stacks (channels, height, width) get the CNN; with
    --recurrent lstm an LSTM core sits between the encoder and the heads."""
    from mpirl.nets.actor_critic import ActorCritic, CNNActorCritic
    from mpirl.nets.recurrent import RecurrentActorCritic
    kwargs = dict(obs_norm=cfg.normalize_obs, clip_obs=cfg.clip_obs,
                  log_std_init=cfg.log_std_init, squash=cfg.action_bounds == "squash",
                  value_heads=2 if rnd.active(cfg) else 1)
    if recurrent(cfg):
        return RecurrentActorCritic(env, list(cfg.hidden_sizes), cfg.activation,
                                    lstm_size=cfg.lstm_size, cnn=is_image(env),
                                    precision=getattr(cfg, "precision", "fp32"),
                                    separate_critic=cfg.separate_critic, **kwargs)
    if is_image(env):
        return CNNActorCritic(env, list(cfg.hidden_sizes), cfg.activation,
                              precision=cfg.precision, **kwargs)
    return ActorCritic(env, list(cfg.hidden_sizes), cfg.activation, **kwargs)


def atari_training(cfg) -> tuple[bool, bool]:
    """(clip rewards, a lost life ends the returns): as configured, else on for Atari."""
    atari = is_atari(cfg.env)
    return (atari if cfg.clip_rewards is None else cfg.clip_rewards,
            atari if cfg.episodic_life is None else cfg.episodic_life)


def collector(ctx) -> RolloutCollector:
    """On-policy rollouts of --n-steps steps from each env (``mpirl.algos.api.ActingContext``),
    after RND's random-action steps with --intrinsic rnd."""
    cfg = ctx.cfg
    rollouts = RolloutCollector(ctx.policy, ctx.envs, cfg.n_steps, cfg.gamma, ctx.rng,
                                *atari_training(cfg), min_steps=min_rollout_steps(cfg))
    return rnd.collector(ctx, rollouts)


def min_rollout_steps(cfg) -> int | None:
    """With --straggler-cutoff: the steps an actor collects before it may be cut."""
    if getattr(cfg, "straggler_cutoff", 0.0) <= 0:
        return None
    return max(1, math.ceil(cfg.straggler_min_share * cfg.n_steps))


def rollout_message(cfg, env: EnvSpec) -> Fields:
    cut = min_rollout_steps(cfg) is not None
    return {**rollout_fields(env, cfg.n_steps, cfg.envs_per_actor, cut=cut),
            **rnd.message_fields(cfg, env), **recurrent_fields(cfg, env)}


def recurrent_fields(cfg, env: EnvSpec) -> Fields:
    """With --recurrent: the cores' state at the rollout's start, (rows, envs, --lstm-size)
    (``recurrent_state_rows``: 4 with a separate critic core, else 2), and the
    steps after which an env's state was zeroed (its episode ended), (steps, envs)."""
    if not recurrent(cfg):
        return {}
    T, N = cfg.n_steps, cfg.envs_per_actor
    rows = recurrent_state_rows(cfg.separate_critic, is_image(env))
    return {"state": ((rows, N, cfg.lstm_size), np.dtype(np.float32)),
            "resets": ((T, N), np.dtype(np.float32))}


def check_precision(setup) -> None:
    """--precision bf16 on an MLP is refused; where this rank's CPU (the acting ranks' device)
    or the learners' device emulates bfloat16, the run is told that it will be slow."""
    cfg = setup.cfg
    if cfg.precision == "bf16" and is_image(setup.spec):
        import torch

        from mpirl.nets.actor_critic import native_bf16
        gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        slow = [name for device, name in (("cpu", "CPU"), ("cuda", "GPU"))[:1 + gpu]
                if not native_bf16(device)]
        if slow:
            setup.notes.append(
                f"--precision bf16: bfloat16 is emulated on this {' and '.join(slow)} (no "
                f"AVX512-BF16 or AMX on a CPU), where the CNN computes many times slower than "
                f"in fp32; --precision auto uses bf16 only on CPUs where it is native")
    if cfg.precision == "bf16" and not is_image(setup.spec):
        raise ConfigError(f"--precision {cfg.precision} applies to the CNN policy of a2c and "
                          f"ppo on image observations; env '{cfg.env}' with --algo {cfg.algo} "
                          f"trains an MLP, which computes in fp32")
