"""What the replay-based algorithms share: their replay options and checks, the replay geometry
(every env stream the same number of rows; each learner samples its part of a minibatch), and
``ReplayTrainer``, a synchronous learner that writes its actors' chunks into a replay shard and
makes as many averaged updates as hold the replay ratio. DQN, SAC, TD3 and D4PG build on it.
"""
from mpirl.algos.offpolicy.geometry import batch_split, replay_bytes, replay_rows
from mpirl.algos.offpolicy.options import ReplayOptions, check_replay, replay_startup
from mpirl.algos.offpolicy.trainer import ReplayTrainer

__all__ = ["ReplayOptions", "ReplayTrainer", "batch_split", "check_replay", "replay_bytes",
           "replay_rows", "replay_startup"]
