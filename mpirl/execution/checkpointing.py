"""The checkpoint collective: every rank hands in its own state at the same safe point and
world rank 0 (the lead learner) writes one file.

A role contributes a dict of its own state (``rank_state``); the lead adds the state all
learners share and the run's counters. New algorithms get checkpoints by filling these dicts.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from mpirl import comm
from mpirl.files.checkpoint import Checkpoint, CheckpointStore


def process_rng_state() -> dict:
    """This process's global random streams: numpy's, and torch's where this process has
    imported torch (an actor that acts in numpy never does)."""
    state = {"numpy": np.random.get_state()}
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
    return state


def restore_process_rng_state(state: dict) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))


class Checkpointer:
    """Collective over ``world``: ``save`` gathers every rank's state to rank 0, which writes."""

    def __init__(self, world, store: CheckpointStore):
        self.world, self.store = world, store
        self.last: Path | None = None

    def save(self, rank_state: dict, shared: dict | None = None, meta: dict | None = None
             ) -> tuple[Path, int, float] | str | None:
        """On rank 0: (path, bytes, seconds), or an error text if the file could not be
        written (the older checkpoints stay). Elsewhere: None."""
        start = time.perf_counter()
        states = comm.gather_to_root(self.world, dict(rank_state, rng=process_rng_state()),
                                     what="the other ranks at a checkpoint")
        if states is None:
            return None
        try:
            path, size = self.store.write(Checkpoint(meta or {}, shared or {}, states))
        except OSError as e:  # a full disk raises DiskFull instead: the run cannot go on
            return f"checkpoint at env step {(meta or {}).get('env_steps')} not written: {e}"
        self.last = path
        return path, size, time.perf_counter() - start
