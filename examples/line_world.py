"""A user-defined environment, trained without registering it with Gymnasium:

    PYTHONPATH=examples mpirun -n 4 python -m mpirl.train --env line_world:LineWorld \
        --target-return 0.9

mpirl imports ``line_world`` and calls ``LineWorld()`` on every rank; the class needs only the
Gymnasium ``Env`` interface with a Box observation space.
"""
import gymnasium as gym
import numpy as np


class LineWorld(gym.Env):
    """Reach the right end of a line of 8 cells: +1 there, -0.01 per step, at most 50 steps."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    size = 8

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, self.size // 2))
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.pos / (self.size - 1)], np.float32)

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, self.size - 1))
        self.t += 1
        reached = self.pos == self.size - 1
        reward = 1.0 if reached else -0.01
        return self._obs(), reward, reached, self.t >= 50 and not reached, {}
