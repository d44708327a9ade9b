"""R2D2 on a replay learner: DQN's (``mpirl.algos.dqn.trainer``) with a sequence replay shard
and R2D2's update of the recurrent Q-network."""
from __future__ import annotations

import numpy as np
import torch

from mpirl.algos.api import LearnerContext
from mpirl.algos.dqn.trainer import DQNTrainer
from mpirl.algos.r2d2 import sequence_rows
from mpirl.algos.r2d2.loss import R2D2, sequence_priorities, td_targets
from mpirl.replay import VALID
from mpirl.replay.sequences import FIELDS, SequenceReplay
from mpirl.runtime import timing


class SequencePriorities:
    """A new sequence's priority from the actors' Q-values of its steps: the TD errors of the
    acting network's greedy n-step targets (the learner's replace them once it trains on it)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, seq: dict[str, np.ndarray]) -> np.ndarray:
        cfg, n, burn = self.cfg, self.cfg.n_step, self.cfg.burn_in
        L = seq["rewards"].shape[1]
        with torch.no_grad():
            targets = td_targets(torch.from_numpy(seq["rewards"]),
                                 torch.from_numpy(seq["flags"]),
                                 torch.from_numpy(seq["q_max"]), cfg.gamma, n,
                                 cfg.value_rescaling)[:, burn:]
            taken = torch.from_numpy(seq["q_taken"][:, burn:L - n])
            mask = torch.from_numpy((seq["flags"][:, burn:L - n] & VALID) > 0).float()
            return sequence_priorities((targets - taken) * mask, mask, cfg.priority_eta).numpy()


class R2D2Trainer(DQNTrainer):
    """DQN's learner (network, target copies, fused optimizer, checkpoints) on a sequence
    replay, with R2D2's update."""

    stat_keys = R2D2.STAT_KEYS

    def __init__(self, ctx: LearnerContext):
        super().__init__(ctx)
        self.algo = R2D2(self.cfg, ctx.policy, self.target, self.averager, self.optimizer)

    def make_replay(self) -> SequenceReplay:
        cfg, env = self.cfg, self.ctx.env
        return SequenceReplay(sequence_rows(cfg, self.ctx.total_streams), self.ctx.streams,
                              env.obs_shape, env.obs_dtype, cfg.lstm_size, cfg.seq_len,
                              cfg.seq_len - cfg.seq_overlap, cfg.n_step,
                              SequencePriorities(cfg),
                              alpha=cfg.priority_alpha if cfg.prioritized else None)

    @property
    def samples_per_update(self) -> int:
        """Steps trained on per update: the sequences' steps after their burn-in."""
        return self.cfg.batch_size * (self.cfg.seq_len - self.cfg.burn_in)

    def _ready(self) -> bool:
        rows = min(self.replay.written, self.replay.rows)
        return (rows * self.ctx.total_streams >= self.cfg.learning_starts
                and self.replay.can_sample())

    def ingest(self, messages) -> None:
        timing.switch("replay")
        chunk = {}
        for key in FIELDS:
            parts = [m[key] for m in messages]
            chunk[key] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        self.replay.add(chunk)

    def update(self, sample, weighted: bool) -> dict:
        stats = self.algo.update(sample.sequences, sample.weights if weighted else None)
        stats["td"] = stats.pop("priorities")  # what the replay's priorities are made of
        return stats
