"""mpirl: MPI-native distributed reinforcement learning for HPC clusters."""

__version__ = "0.1.0"
