"""Algorithms: losses and update rules over batches of tensors. No MPI, no environments."""
from mpirl.algos.a2c import A2C, a2c_loss
from mpirl.algos.dqn import DQN, actor_epsilon, double_dqn_targets, dqn_loss
from mpirl.algos.ppo import PPO, ppo_loss
from mpirl.algos.returns import gae

__all__ = ["A2C", "DQN", "PPO", "a2c_loss", "actor_epsilon", "double_dqn_targets", "dqn_loss",
           "gae", "ppo_loss"]
