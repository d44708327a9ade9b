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
from mpirl.algos.dqn.exploration import actor_epsilon
from mpirl.algos.dqn.geometry import replay_bytes, replay_rows
from mpirl.algos.dqn.qnetwork import QNetwork
from mpirl.algos.dqn.trainer import DQNTrainer
from mpirl.algos.optim import MinibatchOptions
from mpirl.algos.registry import register
from mpirl.config.fields import ConfigError, option, require
from mpirl.runtime.memory import available_bytes


@dataclass
class DQNOptions:
    """DQN"""

    replay_size: int = option(200_000, "Replay capacity in transitions, summed over the "
                              "learners' shards (memory is allocated up front).", bounds="[1, inf)")
    replay_ratio: float = option(
        32.0, "Samples trained on per env step collected (updates x --batch-size per step); "
        "held whatever the number of actors.", bounds="(0, inf)")
    learning_starts: int = option(1_000, "Transitions in the replay before updates begin.",
                                  bounds="[0, inf)")
    n_step: int = option(3, "Steps summed in the n-step return.", bounds="[1, inf)")
    target_update: int = option(100, "Copy the online network to the target every this many "
                                "updates.", bounds="[1, inf)")
    weights_every: int = option(8, "Send actors fresh weights every this many updates.",
                                bounds="[1, inf)")
    dueling: bool = option(False, "Dueling value/advantage heads.")
    prioritized: bool = option(False, "Proportional prioritized replay.")
    priority_alpha: float = option(0.6, "Priority exponent alpha of prioritized replay.",
                                   bounds="[0, inf)")
    priority_beta: float = option(
        0.4, "Initial importance-weight exponent beta, annealed to 1 over the budget.",
        bounds="[0, 1]")
    exploration: str = option(
        "apex", "Epsilon per acting rank i of N: apex = eps-base ** (1 + eps-alpha i/(N-1)) "
        "(Ape-X), linear = eps-final for all; both annealed from 1.0 over "
        "--exploration-fraction of the budget.", choices=("apex", "linear"))
    exploration_fraction: float = option(0.1, "Fraction of the budget over which epsilon "
                                         "anneals from 1.0 to its final value.", bounds="[0, 1]")
    eps_final: float = option(0.05, "Final epsilon with --exploration linear.", bounds="[0, 1]")
    eps_base: float = option(0.4, "Ape-X base epsilon.", bounds="[0, 1]")
    eps_alpha: float = option(7.0, "Ape-X epsilon exponent spread.", bounds="[0, inf)")
    checkpoint_replay: bool = option(
        False, "Include the replay shards in checkpoints (large), so a resumed run continues "
        "with its experience; else the replay refills after a resume.")

    @staticmethod
    def validate(cfg) -> None:
        require(cfg.replay_size >= cfg.batch_size,
                f"--replay-size {cfg.replay_size} is smaller than --batch-size "
                f"{cfg.batch_size}: the replay must hold at least one batch")
        require(cfg.batch_size >= cfg.learners,
                f"--batch-size {cfg.batch_size} is less than one sample per learner "
                f"(--learners {cfg.learners})")


DEFAULTS = {"total_steps": 200_000, "envs_per_actor": 4, "n_steps": 16, "optimizer": "adam",
            "lr": 1e-3, "lr_schedule": "linear", "hidden_sizes": [128, 128],
            "activation": "relu", "max_grad_norm": 10.0, "eval_every": 5_000,
            "log_every": 5_000}


def _check(setup) -> None:
    cfg = setup.cfg
    if not setup.spec.discrete:
        raise ConfigError(f"--algo dqn needs a Discrete action space, and env '{cfg.env}' "
                          f"has continuous (Box) actions; use --algo ppo or a2c for it")
    streams = setup.total_streams
    rows = replay_rows(cfg.replay_size, streams)
    need = cfg.n_steps + cfg.n_step + 2
    if rows < need:
        raise ConfigError(
            f"--replay-size {cfg.replay_size:,} spread over {streams} env streams "
            f"({setup.acting_ranks} acting ranks x {cfg.envs_per_actor} envs) leaves "
            f"{rows} steps per stream; each needs at least --n-steps + "
            f"--n-step + 2 = {need}: raise --replay-size to {need * streams:,} or more")
    shard, room, gib = max(replay_bytes(setup)), available_bytes(), 1 << 30
    if room is not None and shard > room:
        raise ConfigError(
            f"--replay-size {cfg.replay_size:,} needs {shard / gib:.2f} GiB per learner's "
            f"replay shard, and this node has {room / gib:.2f} GiB available (free memory, "
            f"or the job's memory limit): lower --replay-size, spread the replay over more "
            f"--learners on more nodes, or ask for more memory")


def _startup(setup) -> list[str]:
    cfg, lay = setup.cfg, setup.layout
    per, mib = replay_bytes(setup), 1 << 20
    per_iteration = setup.steps_per_iteration
    rows = replay_rows(cfg.replay_size, setup.total_streams)
    return [f"mpirl: replay: {cfg.replay_size:,} transitions over {lay.learners} shard(s) of "
            f"{rows:,} steps x {setup.streams_of(0)} env streams, "
            f"{per[0] / mib:.1f} MiB per learner, {sum(per) / mib:.1f} MiB in all (resident "
            f"from the start); batch {cfg.batch_size}, replay ratio {cfg.replay_ratio:g} = "
            f"{cfg.replay_ratio * per_iteration / cfg.batch_size:g} updates per "
            f"{per_iteration} env steps"]


# ---------------------------------------------------------------------- acting
def _policy(cfg, env: EnvSpec) -> QNetwork:
    return QNetwork(env, list(cfg.hidden_sizes), cfg.activation, cfg.dueling)


def _collector(ctx) -> TransitionCollector:
    epsilon_at = functools.partial(actor_epsilon, ctx.cfg, index=ctx.index, count=ctx.count)
    return TransitionCollector(ctx.policy, ctx.envs, ctx.cfg.n_steps, ctx.rng, epsilon_at)


def _message(cfg, env: EnvSpec) -> Fields:
    return transition_fields(env, cfg.n_steps, cfg.envs_per_actor)



ALGORITHM = register(Algorithm(
    name="dqn",
    description="double DQN on distributed (optionally prioritized) replay",
    execution=SYNCHRONOUS,
    options=(DQNOptions, MinibatchOptions),
    defaults=DEFAULTS,
    policy=_policy,
    collector=_collector,
    message=_message,
    trainer=DQNTrainer,
    cheaper_updates="a larger --batch-size makes fewer updates at the same --replay-ratio",
    publication=lambda cfg: EveryUpdates(cfg.weights_every),
    check=_check,
    startup=_startup,
))
