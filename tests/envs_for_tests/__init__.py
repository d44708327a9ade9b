"""Small environments the tests load through 'package.module:Class'."""
import os
import time

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk right to the end of a short corridor: reward 1 at the goal, time limit 20."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 5):
        self.length = length
        self.pos = 0
        self.t = 0

    def _obs(self):
        return np.array([self.pos / self.length], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        self.t += 1
        done = self.pos >= self.length
        return self._obs(), float(done), done, self.t >= 20 and not done, {}


class CrashingCartPole(gym.Env):
    """CartPole that raises on its 200th step on the rank named by MPIRL_TEST_CRASH_RANK."""

    def __init__(self):
        self.env = gym.make("CartPole-v1")
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.steps = 0
        self.crash = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK")) == \
            os.environ.get("MPIRL_TEST_CRASH_RANK", "-1")

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=seed)

    def step(self, action):
        self.steps += 1
        if self.crash and self.steps == 200:
            raise RuntimeError("injected failure in env.step")
        return self.env.step(action)


class SlowCartPole(gym.Wrapper):
    """CartPole whose every step takes at least 5 ms: an expensive simulator."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        time.sleep(0.005)
        return self.env.step(action)


class Hoarder(gym.Env):
    """Episodes of 20 steps whose env holds 4 MB in a reference cycle, as Box2D envs do (the
    world's contact listener refers back to the env): a dropped one is freed only by the
    cyclic garbage collector, which a process with many long-lived objects runs rarely."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.ballast = np.ones(2 ** 19)  # 4 MB, touched
        self.cycle = [self]
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(4, 0.1 * action, np.float32), float(action), False, self.t >= 20, {}


def short_episodes(env):
    """A user's wrapper (--env-wrapper envs_for_tests:short_episodes): episodes of at most 20
    steps."""
    return gym.wrappers.TimeLimit(env, max_episode_steps=20)


def not_a_wrapper(env):
    return "not an env"


_REPORTING = []


def report_imports(env):
    """Leaves the env as it is; at the exit of each process that made one, writes whether it
    imported torch to ``$MPIRL_TEST_IMPORTS_DIR/<pid>`` (which ranks start without it)."""
    if not _REPORTING:
        import atexit
        import sys

        def report():
            path = os.path.join(os.environ["MPIRL_TEST_IMPORTS_DIR"], str(os.getpid()))
            with open(path, "w") as f:
                f.write("torch" if "torch" in sys.modules else "numpy")
        atexit.register(report)
        _REPORTING.append(True)
    return env
