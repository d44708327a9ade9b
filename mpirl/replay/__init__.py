"""Experience replay: a vectorized sum tree and the per-learner replay shard."""
from mpirl.replay.shard import ENDED, TERMINATED, VALID, Prioritization, ReplayShard, Sample
from mpirl.replay.sumtree import SumTree

__all__ = ["ENDED", "TERMINATED", "VALID", "Prioritization", "ReplayShard", "Sample", "SumTree"]
