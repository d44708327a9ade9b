"""The replay geometry of the replay-based algorithms: every env stream gets the same number of
rows, and each learner samples a part of every minibatch in proportion to its streams."""
from __future__ import annotations

from mpirl.replay import ReplayShard


def replay_rows(replay_size: int, total_streams: int) -> int:
    """Rows of every env stream's ring: each stream gets the same number, so every learner's
    shard fills at the same pace and the learners' decisions (whether to train, how often)
    agree without a message."""
    return replay_size // total_streams


def replay_bytes(setup) -> list[int]:
    """Each learner's replay shard in bytes."""
    cfg, spec = setup.cfg, setup.spec
    rows = replay_rows(cfg.replay_size, setup.total_streams)
    return [ReplayShard.estimate_nbytes(rows, setup.streams_of(rank),
                                        spec.obs_shape, spec.obs_dtype, spec.action_shape,
                                        spec.action_dtype, cfg.prioritized)
            for rank in range(setup.layout.learners)]


def batch_split(total: int, streams: list[int]) -> list[int]:
    """Each learner's part of a minibatch of ``total``, in proportion to its env streams."""
    parts = [total * s // sum(streams) for s in streams]
    for r in range(total - sum(parts)):  # the remainder, one each, to the first learners
        parts[r % len(streams)] += 1
    return parts
