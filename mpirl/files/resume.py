"""``--resume RUN_DIR``: find the newest readable checkpoint, settle the config, and hand each
rank the part of the checkpoint it continues from.

What carries over always: weights, optimizer state, the run's counters (env steps, updates,
evaluation and log schedule, target-return state, skipped updates, training time). On the same
layout (world size, learners, envs per actor), each rank also continues its own random streams,
env episodes (for envs whose state can be saved: Gymnasium classic control and toy text) and
partial log statistics, so the run ends exactly where an uninterrupted one would. On another
layout, envs start new episodes and random streams are seeded afresh for the resume count.
"""
from __future__ import annotations

from pathlib import Path

from mpirl.config.fields import ConfigError
from mpirl.config.schema import Config
from mpirl.config.sources import resumed_config
from mpirl.execution.layout import Layout
from mpirl.files.checkpoint import Checkpoint, CheckpointError
from mpirl.files.rundir import RunDir

# The config fields that shape each rank's saved state: it only fits the same values.
_RANK_STATE_FIELDS = ("env", "envs_per_actor", "n_steps", "seed")


def load_for_resume(run_dir: str, given: dict) -> tuple[Config, Checkpoint, list[str]]:
    """(resolved config, newest readable checkpoint, notes for the user). Raises ConfigError."""
    rd = RunDir(run_dir)
    if not (rd.path / "config.yaml").is_file():
        raise ConfigError(f"--resume {run_dir}: not an mpirl run directory (no config.yaml)")
    if given.get("run_dir") and Path(given["run_dir"]).resolve() != rd.path.resolve():
        raise ConfigError("--run-dir and --resume name different directories; a resumed run "
                          "continues in its own directory")
    try:
        ckpt, skipped = rd.checkpoints().newest_readable()
    except CheckpointError as e:
        raise ConfigError(f"--resume {run_dir}: {e}") from None
    notes = [f"skipping checkpoint: {s}" for s in skipped]
    upgrade(ckpt)
    cfg = resumed_config(ckpt.meta["config"], dict(given, run_dir=str(rd.path)))
    notes.append(f"resuming from {ckpt.path} (env step {ckpt.env_steps:,}, "
                 f"update {ckpt.meta['iteration']:,})")
    return cfg, ckpt, notes


def upgrade(ckpt: Checkpoint) -> None:
    """Bring a checkpoint written before state layout 2 to it, in place.

    Layout 1 kept a synchronous learner's optimizer state beside the weights (``shared
    ["optimizer"]``) and DQN's weight-publication count inside the trainer's state
    (``shared["trainer"]["published_at"]``); layout 2 keeps the optimizer in the trainer's
    state and the publication apart. Layout 1's parameter-server counters named the update
    count ``iterations`` and the skipped gradients ``skipped``, and had no evaluation time.
    """
    if ckpt.meta.get("state_layout", 1) >= 2:
        return
    shared = ckpt.shared
    counters = shared.get("counters", {})
    if "iterations" in counters:  # a parameter-server run
        counters["iteration"] = counters.pop("iterations")
        counters["skipped_updates"] = counters.pop("skipped")
        counters.setdefault("eval_time_s", 0.0)
    if "optimizer" in shared:
        trainer = shared.setdefault("trainer", {})
        trainer["optimizer"] = shared.pop("optimizer")
        if "published_at" in trainer:
            shared["publication"] = {"published_at": trainer.pop("published_at")}
    ckpt.meta["state_layout"] = 2


def same_layout(ckpt: Checkpoint, cfg: Config, layout: Layout) -> bool:
    """Whether every rank's saved state fits this run (else only the shared state is used)."""
    saved = ckpt.meta["config"]
    return (ckpt.meta["world_size"] == layout.size and ckpt.meta["learners"] == layout.learners
            and all(saved.get(f) == getattr(cfg, f) for f in _RANK_STATE_FIELDS))


def relayout_note(ckpt: Checkpoint, layout: Layout) -> str:
    m = ckpt.meta
    return (f"the checkpoint was taken on {m['world_size']} rank(s) ({m['learners']} learner(s)) "
            f"and this run has {layout.size} ({layout.learners}), or its env settings differ: "
            "weights, optimizer state and counters carry over; env episodes and random streams "
            "start afresh, so the result will not repeat an uninterrupted run exactly")


def rank_parts(ckpt: Checkpoint, layout: Layout, exact: bool, epoch: int) -> list[dict]:
    """What each world rank gets: the shared state (learners), its own state (same layout)."""
    return [{"epoch": epoch,
             "shared": ckpt.shared if layout.is_learner(r) else None,
             "own": ckpt.ranks[r] if exact else None}
            for r in range(layout.size)]
