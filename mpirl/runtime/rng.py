"""The named random streams of a run.

Every random draw of a run comes from a stream named here, seeded from ``--seed``, the stream,
the rank (and, for envs, the env's index): runs with the same seed and layout repeat exactly,
and every rank and env draws differently. ``epoch`` is the resume count: a resumed run that
cannot continue its saved streams (another layout) seeds fresh ones with it, so it does not
replay its first segment.

The built-in streams keep fixed numbers in the seed key (results and checkpoints depend on
them); a plug-in's own stream name gets a number derived from the name.

Initial weights are the one use of torch's global generator: ``seed_initial_weights`` before
each network is built gives every rank the same weights.
"""
from __future__ import annotations

import zlib

import numpy as np

STREAMS = {
    "env": 0,           # env resets (env_seed)
    "evaluation": 1,    # evaluation episodes' env resets
    "actions": 2,       # action sampling and exploration on acting ranks
    "replay": 3,        # replay sampling on learners
    "minibatches": 4,   # minibatch order on learners
}


def stream_id(name: str) -> int:
    """A stream's number in the seed key."""
    if name in STREAMS:
        return STREAMS[name]
    return 1_000 + zlib.crc32(name.encode())


def _key(seed: int, stream: str, *rest: int, epoch: int = 0) -> list[int]:
    return [seed, stream_id(stream), *rest] + ([epoch] if epoch else [])


def generator(seed: int, stream: str, rank: int, epoch: int = 0) -> np.random.Generator:
    """Rank ``rank``'s generator of ``stream``."""
    return np.random.default_rng(np.random.SeedSequence(_key(seed, stream, rank, epoch=epoch)))


def env_seed(seed: int, rank: int, index: int, stream: str = "env", epoch: int = 0) -> int:
    """The reset seed of env ``index`` on ``rank``; ``stream`` "evaluation" for evaluation
    episodes (where ``rank`` is the evaluation round)."""
    key = _key(seed, stream, rank, index, epoch=epoch)
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def seed_initial_weights(seed: int) -> None:
    """Seed torch before building a network: every rank then builds the same weights."""
    import torch
    torch.manual_seed(seed)


def restore_torch_generator(generator, state) -> bool:
    """Continue ``generator`` (a ``torch.Generator``) from a checkpointed ``get_state()``.
    A state saved by a generator of another device type (a CUDA run resumed on CPUs, or the
    reverse: the two keep states of different algorithms and sizes) cannot be continued: the
    generator is then seeded from that state's bytes, so the resumed run is still repeatable.
    Returns whether the saved stream was continued."""
    import torch
    try:
        generator.set_state(state)
        return True
    except RuntimeError:
        data = state.numpy().tobytes() if isinstance(state, torch.Tensor) else bytes(state)
        generator.manual_seed(int(np.random.SeedSequence(
            np.frombuffer(data, np.uint8).tolist()).generate_state(1, np.uint64)[0]) >> 1)
        return False
