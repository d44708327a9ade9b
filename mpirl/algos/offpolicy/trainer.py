"""A synchronous learner that trains from a replay shard: its actors' chunks go into the shard;
each iteration makes as many averaged updates as keep --replay-ratio (samples trained per env
step), whatever the actor count.

The number of updates is a function of the counters alone (a fractional carry keeps the
long-run ratio exact), so every learner makes the same number and the allreduces line up.
An algorithm fills in ``update`` (one averaged step on a minibatch) and, if it needs one,
``after_update``.
"""
from __future__ import annotations

import abc

import numpy as np

from mpirl.acting.messages import PackedArrays
from mpirl.algos.api import LearnerContext, Trainer
from mpirl.algos.offpolicy.geometry import batch_split, replay_rows
from mpirl.replay import Prioritization, ReplayShard, Sample
from mpirl.runtime import timing


class ReplayTrainer(Trainer):
    checkpoint_unit = "updates"  # as --weights-every and the target updates count

    def __init__(self, ctx: LearnerContext):
        super().__init__(ctx)
        cfg = self.cfg = ctx.cfg
        # this learner's part of every minibatch, in proportion to its env streams
        self.batch = batch_split(cfg.batch_size, list(ctx.learner_streams))[ctx.rank]
        self.replay = self.make_replay()
        self.rng = ctx.rng("replay")
        self.credit = 0.0          # fractional updates owed to the replay ratio
        self._window = [0, 0]      # updates and env steps since the last log row

    def make_replay(self):
        """This learner's replay shard (``add``, ``sample``, ``update_priorities``, ``fill``,
        ``written``, ``rows``, ``nbytes``, ``state_dict``)."""
        cfg, env = self.cfg, self.ctx.env
        prio = Prioritization(alpha=cfg.priority_alpha) if cfg.prioritized else None
        return ReplayShard(replay_rows(cfg.replay_size, self.ctx.total_streams),
                           self.ctx.streams, env.obs_shape, env.obs_dtype, env.action_shape,
                           env.action_dtype, cfg.n_step, cfg.gamma, prio)

    # samples of the replay ratio one update trains on
    @property
    def samples_per_update(self) -> int:
        return self.cfg.batch_size

    @abc.abstractmethod
    def update(self, sample: Sample, weighted: bool) -> dict:
        """One averaged update on this learner's part of a minibatch. Returns its statistics,
        ``skipped`` (the same verdict on every learner) and, for prioritized replay, ``td``:
        each sample's new priority before the exponent (its absolute TD error)."""

    def after_update(self) -> None:
        """After each applied update, with ``self.updates`` counting it (target networks)."""

    # ------------------------------------------------------------------ data in
    def ingest(self, messages: list[PackedArrays]) -> None:
        timing.switch("replay")
        parts = {k: [m[k] for m in messages] for k in ("obs", "actions", "rewards", "flags")}
        joined = {k: v[0] if len(v) == 1 else np.concatenate(v, axis=1) for k, v in parts.items()}
        self.replay.add(joined["obs"], joined["actions"], joined["rewards"], joined["flags"])

    # ------------------------------------------------------------------ updates
    def _ready(self) -> bool:
        """Whether updates may run: the same answer on every learner, since every shard has
        had the same number of rows written."""
        rows = min(self.replay.written, self.replay.rows)
        return (rows * self.ctx.total_streams >= self.cfg.learning_starts
                and self.replay.written > self.replay.n_step + 1)

    def updates_due(self, steps: int) -> int:
        if not self._ready():
            return 0
        self.credit += self.cfg.replay_ratio * steps / self.samples_per_update
        due = int(self.credit)
        self.credit -= due
        return due

    def train(self, progress: float) -> list[dict]:
        cfg, steps = self.cfg, self.ctx.steps_per_iteration
        due = self.updates_due(steps)
        self._window[1] += steps
        beta = cfg.priority_beta + min(progress, 1.0) * (1.0 - cfg.priority_beta)
        out = []
        for _ in range(due):
            timing.switch("replay")
            sample = self.replay.sample(self.batch, self.rng, beta)
            timing.switch("gradient")
            stats = self.update(sample, weighted=cfg.prioritized)
            out.append(stats)
            if stats["skipped"]:
                if cfg.nonfinite == "stop":
                    break
                continue
            if cfg.prioritized:
                timing.switch("replay")
                self.replay.update_priorities(sample.cells, stats["td"])
            self.updates += 1
            self._window[0] += 1
            self.after_update()
            self.ctx.poll()  # the weights going out to actors move on
        return out

    # ------------------------------------------------------------------ reporting
    def row(self, seconds: float) -> dict:
        updates, steps = self._window
        self._window = [0, 0]
        return {"updates": self.updates,
                "replay_ratio": (updates * self.samples_per_update / steps if steps
                                 else float("nan")),
                "replay_fill": self.replay.fill(),
                "updates_per_s": updates / seconds if seconds > 0 else float("nan")}

    def summary(self) -> dict:
        return {"updates": self.updates, "batch_size": self.cfg.batch_size,
                "replay_ratio": self.cfg.replay_ratio,
                "replay_bytes_per_learner": self.replay.nbytes}

    def update_work(self) -> int | None:
        averager = getattr(self, "averager", None)
        return None if averager is None else averager.numel * self.batch

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        # the partial log window too: a resumed run's next row counts what this one had
        return {"updates": self.updates, "credit": self.credit, "window": list(self._window)}

    def own_state_dict(self) -> dict:
        own = {"rng": self.rng.bit_generator.state}
        if self.cfg.checkpoint_replay:
            own["replay"] = self.replay.state_dict()
        return own

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        if shared:
            self.updates, self.credit = shared["updates"], shared["credit"]
            self._window = list(shared.get("window", self._window))
        if own:
            self.rng.bit_generator.state = own["rng"]
            if "replay" in own:
                self.replay.load_state_dict(own["replay"])
