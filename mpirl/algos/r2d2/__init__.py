"""R2D2: recurrent experience replay in distributed reinforcement learning (Kapturowski et al.
2019), on synchronous learners.

Actors act epsilon-greedily with a recurrent Q-network (Ape-X's spread of rates, as DQN's
actors), carry each env's LSTM state, and send chunks of steps with the state before each and
their Q-values. Each learner keeps a sequence replay shard (--seq-len steps per sequence,
consecutive ones overlapping by --seq-overlap) whose priorities mix the max and mean absolute
TD error; it replays the first --burn-in steps of a sequence without gradient to refresh the
stored state, then trains on the rest with n-step double-Q targets under the invertible value
rescaling h. Gradients are averaged over the learners as DQN's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from mpirl.acting.envs import EnvSpec
from mpirl.acting.messages import Fields
from mpirl.algos.actor_critic import RecurrentOptions
from mpirl.algos.api import SYNCHRONOUS, Algorithm, EveryUpdates
from mpirl.algos.dqn import DQNOptions
from mpirl.algos.dqn.exploration import actor_epsilon
from mpirl.algos.offpolicy import ReplayOptions
from mpirl.config.general import MinibatchOptions
from mpirl.algos.r2d2.collect import SequenceCollector, sequence_fields
from mpirl.algos.registry import register
from mpirl.config.fields import ConfigError, option, require
from mpirl.replay.sequences import SequenceReplay
from mpirl.runtime.memory import available_bytes


def sequence_rows(cfg, total_streams: int) -> int:
    """Steps per env stream of the sequence replay: --replay-size spread over the streams,
    rounded down to whole sequence strides."""
    stride = cfg.seq_len - cfg.seq_overlap
    return cfg.replay_size // total_streams // stride * stride


@dataclass
class R2D2Options:
    """R2D2"""

    seq_len: int = option(20, "Steps per replayed sequence, --burn-in included.",
                          bounds="[2, inf)")
    seq_overlap: int = option(10, "Steps that consecutive sequences of an env stream share.",
                              bounds="[0, inf)")
    burn_in: int = option(5, "First steps of each sequence replayed without gradient, to "
                          "refresh the recurrent state stored with it; the rest are trained.",
                          bounds="[0, inf)")
    priority_eta: float = option(0.9, "Sequence priority: eta x max + (1 - eta) x mean of "
                                 "its absolute TD errors.", bounds="[0, 1]")
    value_rescaling: bool = option(True, "Learn h(Q) with the invertible rescaling h(x) = "
                                   "sign(x)(sqrt(|x| + 1) - 1) + 0.001 x, targets "
                                   "h(R + discount h^-1(Q')).")

    @staticmethod
    def validate(cfg) -> None:
        require(cfg.seq_overlap < cfg.seq_len,
                f"--seq-overlap {cfg.seq_overlap} must be less than --seq-len {cfg.seq_len}")
        require(cfg.burn_in < cfg.seq_len,
                f"--burn-in {cfg.burn_in} must leave steps to train on: it is at least "
                f"--seq-len {cfg.seq_len}")


# CartPole settings (mpirl/CartPoleNoVel-v1 included), from DQN's: on CartPoleNoVel (4 ranks,
# seed 0) a replay ratio of 8 trained steps per env step reached 280 in 200k steps, 32 reached
# 500 at 35k but fell back late, and 32 with 5-step returns 483 at 30k, holding 500 to 200k
DEFAULTS = {"total_steps": 200_000, "envs_per_actor": 4, "n_steps": 16, "optimizer": "adam",
            "lr": 1e-3, "lr_schedule": "linear", "hidden_sizes": [64], "activation": "relu",
            "max_grad_norm": 10.0, "eval_every": 5_000, "log_every": 5_000, "batch_size": 32,
            "replay_ratio": 32.0, "replay_size": 100_000, "n_step": 5, "recurrent": "lstm",
            "prioritized": True}


def _policy(cfg, env: EnvSpec):
    from mpirl.algos.r2d2.network import RecurrentQNetwork
    return RecurrentQNetwork(env, list(cfg.hidden_sizes), cfg.activation, cfg.lstm_size,
                             cfg.dueling)


def _collector(ctx) -> SequenceCollector:
    epsilon_at = functools.partial(actor_epsilon, ctx.cfg, index=ctx.index, count=ctx.count)
    return SequenceCollector(ctx.policy, ctx.envs, ctx.cfg.n_steps, ctx.rng, epsilon_at)


def _message(cfg, env: EnvSpec) -> Fields:
    return sequence_fields(env, cfg.n_steps, cfg.envs_per_actor, cfg.lstm_size)


def _validate(cfg) -> None:
    if cfg.recurrent != "lstm":
        raise ConfigError("--algo r2d2 is recurrent: it takes --recurrent lstm only")


def _check(setup) -> None:
    """Every stream's ring must hold a sequence, its bootstrap steps and a chunk; every
    learner's shard must fit in the node's memory."""
    cfg = setup.cfg
    stride = cfg.seq_len - cfg.seq_overlap
    rows = sequence_rows(cfg, setup.total_streams)
    need = cfg.seq_len + cfg.n_step + stride + cfg.n_steps
    if rows < need:
        raise ConfigError(
            f"--replay-size {cfg.replay_size:,} spread over {setup.total_streams} env streams "
            f"leaves {rows} steps per stream; each needs at least --seq-len + --n-step + a "
            f"stride + --n-steps = {need}: raise --replay-size to {need * setup.total_streams:,}"
            f" or more")
    shard = max(SequenceReplay.estimate_nbytes(rows, setup.streams_of(r), setup.spec.obs_shape,
                                               setup.spec.obs_dtype, cfg.lstm_size, stride)
                for r in range(setup.layout.learners))
    room = available_bytes()
    if room is not None and shard > room:
        raise ConfigError(f"--replay-size {cfg.replay_size:,} needs {shard / (1 << 30):.2f} GiB "
                          f"per learner's sequence replay, and this node has "
                          f"{room / (1 << 30):.2f} GiB available: lower --replay-size")


def _startup(setup) -> list[str]:
    cfg = setup.cfg
    stride = cfg.seq_len - cfg.seq_overlap
    rows = sequence_rows(cfg, setup.total_streams)
    mib = SequenceReplay.estimate_nbytes(rows, setup.streams_of(0), setup.spec.obs_shape,
                                         setup.spec.obs_dtype, cfg.lstm_size, stride) / (1 << 20)
    return [f"mpirl: sequence replay: {rows // stride:,} sequences of {cfg.seq_len} steps "
            f"(burn-in {cfg.burn_in}, overlap {cfg.seq_overlap}) x {setup.streams_of(0)} env "
            f"streams, {mib:.1f} MiB per learner; batch {cfg.batch_size} sequences"]


ALGORITHM = register(Algorithm(
    name="r2d2",
    description="R2D2: recurrent Q-learning on distributed sequence replay",
    execution=SYNCHRONOUS,
    model_averaging=True,
    options=(R2D2Options, DQNOptions, ReplayOptions, MinibatchOptions, RecurrentOptions),
    defaults=DEFAULTS,
    policy=_policy,
    collector=_collector,
    message=_message,
    trainer="mpirl.algos.r2d2.trainer:R2D2Trainer",
    cheaper_updates="a larger --batch-size makes fewer updates at the same --replay-ratio",
    publication=lambda cfg: EveryUpdates(cfg.weights_every),
    validate=_validate,
    check=_check,
    actions=("discrete",),
    startup=_startup,
))
