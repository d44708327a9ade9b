"""Algorithms: losses and update rules over batches of tensors. No MPI, no environments."""
from mpirl.algos.a2c import A2C, a2c_loss
from mpirl.algos.returns import gae

__all__ = ["A2C", "a2c_loss", "gae"]
