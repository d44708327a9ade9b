"""Environments: creation from a Gymnasium id or ``package.module:Class``, and an in-process
vector of envs.

An actor steps its envs in its own process: MPI ranks are the parallelism, and on small envs a
process hand-off per step costs more than the step itself.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from mpirl.config import ConfigError


def make_env(env_id: str) -> gym.Env:
    """A Gymnasium env from a registered id, or from ``package.module:Class`` (instantiated with
    no arguments). Raises ConfigError with a readable message if it cannot be made."""
    module_name, _, attr = env_id.partition(":")
    if attr.isidentifier():  # 'pkg.mod:Class'; 'pkg.mod:Name-v0' is a registered id for gym
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(
                f"cannot import module '{module_name}' for env '{env_id}': {e}") from None
        target = getattr(module, attr, None)
        if target is None:
            raise ConfigError(f"module '{module_name}' has no attribute '{attr}' (env '{env_id}')")
        env = target()
        if not isinstance(env, gym.Env):
            raise ConfigError(f"'{env_id}' did not give a gymnasium.Env (got {type(env).__name__})")
        return env
    try:
        return gym.make(env_id, disable_env_checker=True)
    except gym.error.Error as e:
        raise ConfigError(f"unknown or unusable env '{env_id}': {e}") from None
    except ImportError as e:
        raise ConfigError(f"env '{env_id}' needs a package that is not installed: {e}") from None


@dataclass(frozen=True)
class EnvSpec:
    """What the model and the buffers need to know about an env."""

    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    discrete: bool
    n_actions: int  # number of discrete actions, or the action vector's length
    action_low: np.ndarray | None
    action_high: np.ndarray | None

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.discrete else (self.n_actions,)

    @property
    def action_dtype(self) -> np.dtype:
        return np.dtype(np.int64) if self.discrete else np.dtype(np.float32)


def describe_env(env: gym.Env, env_id: str = "") -> EnvSpec:
    """Read the spaces; raises ConfigError for spaces mpirl does not handle."""
    name = env_id or type(env).__name__
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box):
        raise ConfigError(f"env '{name}' has a {type(obs).__name__} observation space; "
                          "mpirl needs a Box observation space")
    if isinstance(act, gym.spaces.Discrete):
        return EnvSpec(obs.shape, obs.dtype, True, int(act.n), None, None)
    if isinstance(act, gym.spaces.Box):
        return EnvSpec(obs.shape, obs.dtype, False, int(np.prod(act.shape)),
                       act.low.astype(np.float32).ravel(), act.high.astype(np.float32).ravel())
    raise ConfigError(f"env '{name}' has a {type(act).__name__} action space; "
                      "mpirl handles Discrete and Box actions")


def env_seed(seed: int, rank: int, index: int, stream: int = 0) -> int:
    """A distinct, repeatable seed for env ``index`` on ``rank`` (stream 1 is for evaluation)."""
    return int(np.random.SeedSequence([seed, stream, rank, index]).generate_state(1)[0])


class EnvVector:
    """``n`` envs stepped in lockstep in this process, each reset as soon as its episode ends.

    ``step`` returns the next observations (already reset where an episode ended), rewards,
    ``terminated``, ``truncated``, and ``final_obs`` where an episode was truncated (for
    bootstrapping). Finished-episode returns and lengths accumulate until ``pop_episodes``.
    """

    def __init__(self, env_id: str, n: int, seed: int, rank: int, stream: int = 0):
        self.envs = [make_env(env_id) for _ in range(n)]
        self.spec = describe_env(self.envs[0], env_id)
        self.n = n
        self.obs = np.zeros((n, *self.spec.obs_shape), dtype=self.spec.obs_dtype)
        for i, env in enumerate(self.envs):
            s = env_seed(seed, rank, i, stream)
            self.obs[i], _ = env.reset(seed=s)
            env.action_space.seed(s)
        self._ret = np.zeros(n, dtype=np.float64)
        self._len = np.zeros(n, dtype=np.int64)
        self.done_returns: list[float] = []
        self.done_lengths: list[int] = []
        self.done_envs: list[int] = []

    def step(self, actions: np.ndarray):
        n = self.n
        rewards = np.empty(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_obs: dict[int, np.ndarray] = {}
        for i, env in enumerate(self.envs):
            o, r, te, tr, _ = env.step(actions[i])
            rewards[i] = r
            self._ret[i] += r
            self._len[i] += 1
            if te or tr:
                terminated[i], truncated[i] = te, tr and not te
                if truncated[i]:
                    final_obs[i] = np.asarray(o)
                self.done_returns.append(float(self._ret[i]))
                self.done_lengths.append(int(self._len[i]))
                self.done_envs.append(i)
                self._ret[i] = 0.0
                self._len[i] = 0
                o, _ = env.reset()
            self.obs[i] = o
        return self.obs, rewards, terminated, truncated, final_obs

    def pop_episodes(self) -> tuple[list[float], list[int]]:
        out = (self.done_returns, self.done_lengths)
        self.done_returns, self.done_lengths, self.done_envs = [], [], []
        return out

    def pop_episodes_by_env(self) -> tuple[list[tuple[int, float]], list[int]]:
        """Like ``pop_episodes``, with each return paired with the index of its env."""
        envs = self.done_envs
        returns, lengths = self.pop_episodes()
        return list(zip(envs, returns)), lengths

    def close(self) -> None:
        for env in self.envs:
            env.close()
