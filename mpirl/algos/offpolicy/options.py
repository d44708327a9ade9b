"""The options every replay-based algorithm reads, and the checks of the replay against the
layout and the node's memory."""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.algos.offpolicy.geometry import replay_bytes, replay_rows
from mpirl.config.fields import ConfigError, option, require
from mpirl.runtime.memory import available_bytes


@dataclass
class ReplayOptions:
    """distributed replay"""

    replay_size: int = option(200_000, "Replay capacity in transitions, summed over the "
                              "learners' shards (memory is allocated up front).", bounds="[1, inf)")
    replay_ratio: float = option(
        32.0, "Samples trained on per env step collected (updates x --batch-size per step); "
        "held whatever the number of actors.", bounds="(0, inf)")
    learning_starts: int = option(1_000, "Transitions in the replay before updates begin.",
                                  bounds="[0, inf)")
    n_step: int = option(3, "Steps summed in the n-step return.", bounds="[1, inf)")
    weights_every: int = option(8, "Send actors fresh weights every this many updates.",
                                bounds="[1, inf)")
    prioritized: bool = option(False, "Proportional prioritized replay.")
    priority_alpha: float = option(0.6, "Priority exponent alpha of prioritized replay.",
                                   bounds="[0, inf)")
    priority_beta: float = option(
        0.4, "Initial importance-weight exponent beta, annealed to 1 over the budget.",
        bounds="[0, 1]")
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


def check_replay(setup) -> None:
    """Every env stream's ring must hold a chunk and an n-step window; every learner's shard
    must fit in the node's memory (ConfigError otherwise)."""
    cfg = setup.cfg
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


def replay_startup(setup) -> list[str]:
    """The start-up line that describes the replay and the update rate."""
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
