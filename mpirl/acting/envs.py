"""Environments: creation from a Gymnasium id or ``package.module:Class`` (with keyword
arguments and a user's wrapper: ``EnvRef``), and an in-process vector of envs.

An actor steps its envs in its own process: MPI ranks are the parallelism, and on small envs a
process hand-off per step costs more than the step itself.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from mpirl.acting import partial
from mpirl.config.fields import ConfigError
from mpirl.runtime.rng import env_seed

partial.register()  # the partially observed tasks mpirl ships (mpirl/CartPoleNoVel-v1)

ATARI_FRAME_STACK = 4


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` names an Arcade Learning Environment game (``ALE/Pong-v5``,
    ``PongNoFrameskip-v4``)."""
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


@dataclass(frozen=True)
class EnvRef:
    """An env as a run makes it: its id, its constructor's keyword arguments (--env-kwargs) and
    the user's wrapper (--env-wrapper, 'package.module:function'). Wherever an env id is taken,
    an ``EnvRef`` may stand for it."""

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrapper: str | None = None

    def __str__(self) -> str:
        return self.id


# env factories given to the Python API (``mpirl.train(env=...)``), by the name the run uses
_FACTORIES: dict[str, Any] = {}


def register_factory(name: str, factory) -> None:
    """Make ``--env name`` call ``factory(**env_kwargs)`` in this process."""
    _FACTORIES[name] = factory


def env_ref(cfg) -> EnvRef:
    """The env a run's config names."""
    from mpirl.config.general import env_kwargs
    return EnvRef(cfg.env, env_kwargs(cfg), cfg.env_wrapper)


def _wrap(env: gym.Env, ref: EnvRef) -> gym.Env:
    module_name, _, attr = ref.wrapper.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import module '{module_name}' for --env-wrapper "
                          f"'{ref.wrapper}': {e}") from None
    wrapper = getattr(module, attr, None)
    if not callable(wrapper):
        raise ConfigError(f"module '{module_name}' has no function '{attr}' (--env-wrapper)")
    wrapped = wrapper(env)
    if not isinstance(wrapped, gym.Env):
        raise ConfigError(f"--env-wrapper '{ref.wrapper}' did not return a gymnasium.Env (got "
                          f"{type(wrapped).__name__})")
    return wrapped


def make_atari(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """An ALE game with the standard preprocessing (Mnih et al. 2015; Machado et al. 2018):
    up to 30 no-op actions at reset, each action repeated for 4 frames (max over the last two),
    84x84 greyscale, the last 4 frames stacked: observations (4, 84, 84) uint8.

    Lives are left to the training code (``--episodic-life``), and rewards are unclipped here
    (``--clip-rewards`` clips what learners see), so returns in the logs are game scores."""
    try:
        import ale_py
    except ImportError:
        raise ConfigError(f"env '{env_id}' needs the Arcade Learning Environment: "
                          "pip install 'mpirl[atari]' (ale-py, which ships the ROMs, and "
                          "opencv for the frame resizing)") from None
    gym.register_envs(ale_py)
    kwargs = {"frameskip": 1} if env_id.startswith("ALE/") else {}  # the wrapper skips frames
    kwargs.update(env_kwargs or {})
    try:
        env = gym.make(env_id, disable_env_checker=True, **kwargs)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                              grayscale_obs=True, terminal_on_life_loss=False)
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"env '{env_id}' needs a package that is not installed: {e}; "
                          "pip install 'mpirl[atari]'") from None
    except gym.error.Error as e:
        raise ConfigError(f"unknown or unusable env '{env_id}': {e}") from None
    return gym.wrappers.FrameStackObservation(env, ATARI_FRAME_STACK)


def make_env(env: str | EnvRef) -> gym.Env:
    """A Gymnasium env from a registered id, or from ``package.module:Class``, built with the
    ``EnvRef``'s keyword arguments (none for a plain id) and passed through its wrapper; Atari
    ids get the standard preprocessing (``make_atari``) before the wrapper. Raises ConfigError
    with a readable message if it cannot be made."""
    ref = env if isinstance(env, EnvRef) else EnvRef(env)
    try:
        made = _make(ref.id, dict(ref.kwargs))
    except TypeError as e:  # a keyword the constructor does not take, or a wrong value
        if not ref.kwargs:
            raise
        raise ConfigError(f"env '{ref.id}' cannot be made with --env-kwargs "
                          f"{dict(ref.kwargs)}: {e}") from None
    return made if ref.wrapper is None else _wrap(made, ref)


def _make(env_id: str, kwargs: dict) -> gym.Env:
    factory = _FACTORIES.get(env_id)
    if factory is not None:
        env = factory(**kwargs)
        if not isinstance(env, gym.Env):
            raise ConfigError(f"the env function for '{env_id}' did not return a gymnasium.Env "
                              f"(got {type(env).__name__})")
        return env
    if is_atari(env_id):
        return make_atari(env_id, kwargs)
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
        env = target(**kwargs)
        if not isinstance(env, gym.Env):
            raise ConfigError(f"'{env_id}' did not give a gymnasium.Env (got {type(env).__name__})")
        return env
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except (ImportError, gym.error.DependencyNotInstalled) as e:
        hint = " (pip install 'mpirl[mujoco]')" if "mujoco" in str(e).lower() else ""
        raise ConfigError(f"env '{env_id}' needs a package that is not installed: "
                          f"{e}{hint}") from None
    except gym.error.Error as e:
        raise ConfigError(f"unknown or unusable env '{env_id}': {e}") from None


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


# Gymnasium's own modules whose envs keep all their state in plain attributes (numbers, arrays,
# a numpy Generator): a snapshot of those attributes, wrappers included, resumes an episode in
# progress exactly. Other envs (physics engines, emulators, your own) start new episodes.
RESTORABLE_ENV_MODULES = ("gymnasium.envs.classic_control.", "gymnasium.envs.toy_text.")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def env_restorable(env: gym.Env) -> bool:
    return type(env.unwrapped).__module__.startswith(RESTORABLE_ENV_MODULES)


def _plain(v) -> bool:
    if v is None or isinstance(v, (bool, int, float, str, np.generic)):
        return True
    if isinstance(v, np.ndarray):
        return not v.dtype.hasobject
    if isinstance(v, (tuple, list)):
        return all(_plain(x) for x in v)
    return False


def _layers(env: gym.Env) -> list:
    out = [env]
    while isinstance(out[-1], gym.Wrapper):
        out.append(out[-1].env)
    return out


def env_state(env: gym.Env) -> list[dict] | None:
    """A snapshot of a restorable env (one dict of plain attributes per wrapper layer), else
    None."""
    if not env_restorable(env):
        return None
    layers = []
    for layer in _layers(env):
        snap = {}
        for k, v in vars(layer).items():
            if isinstance(v, np.random.Generator):
                snap[k] = {"bit_generator_state": v.bit_generator.state}
            elif _plain(v):
                snap[k] = v.copy() if isinstance(v, np.ndarray) else v
        layers.append(snap)
    return layers


def load_env_state(env: gym.Env, state: list[dict]) -> None:
    """Put a snapshot from ``env_state`` back into an env made from the same id."""
    layers = _layers(env)
    if len(layers) != len(state):
        raise ValueError("the env's wrappers differ from the saved env's")
    for layer, snap in zip(layers, state):
        for k, v in snap.items():
            if isinstance(v, dict) and set(v) == {"bit_generator_state"}:
                name = v["bit_generator_state"]["bit_generator"]
                if name not in _BIT_GENERATORS:
                    raise ValueError(f"unknown bit generator {name!r}")
                bits = getattr(np.random, name)()
                bits.state = v["bit_generator_state"]
                v = np.random.Generator(bits)
            setattr(layer, k, v)


class EnvVector:
    """``n`` envs stepped in lockstep in this process, each reset as soon as its episode ends.

    ``step`` returns the next observations (already reset where an episode ended), rewards,
    ``terminated``, ``truncated``, and ``final_obs`` where an episode was truncated (for
    bootstrapping). Finished-episode returns and lengths accumulate until ``pop_episodes``.
    ``life_lost`` marks the envs whose game lost a life in the last step but goes on (envs
    that report ``lives`` in their info, as Atari games do).
    """

    def __init__(self, env_id: str | EnvRef, n: int, seed: int, rank: int, stream: str = "env"):
        self._seeding = (seed, rank, stream)
        self.envs = [make_env(env_id) for _ in range(n)]
        self.spec = describe_env(self.envs[0], env_id)
        self.n = n
        self.obs = np.zeros((n, *self.spec.obs_shape), dtype=self.spec.obs_dtype)
        self.lives = np.zeros(n, dtype=np.int64)
        self.life_lost = np.zeros(n, dtype=bool)
        for i, env in enumerate(self.envs):
            s = env_seed(seed, rank, i, stream)
            self.obs[i], info = env.reset(seed=s)
            self.lives[i] = info.get("lives", 0)
            env.action_space.seed(s)
        self._ret = np.zeros(n, dtype=np.float64)
        self._len = np.zeros(n, dtype=np.int64)
        self.done_returns: list[float] = []
        self.done_lengths: list[int] = []
        self.done_envs: list[int] = []
        self.restarted: list[int] = []  # the envs the last load_state_dict started anew

    def step(self, actions: np.ndarray, hold: np.ndarray | None = None):
        """Step every env (but those where ``hold`` is True, which keep their observation and
        get reward 0)."""
        n = self.n
        rewards = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_obs: dict[int, np.ndarray] = {}
        self.life_lost[:] = False
        if self.spec.discrete:  # Python ints: envs check them against their space far faster
            actions = actions.tolist()
        for i, env in enumerate(self.envs):
            if hold is not None and hold[i]:
                continue
            o, r, te, tr, info = env.step(actions[i])
            if "lives" in info:
                lives = info["lives"]
                self.life_lost[i] = lives < self.lives[i] and not (te or tr)
                self.lives[i] = lives
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
                o, info = env.reset()
                self.lives[i] = info.get("lives", 0)
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

    def state_dict(self) -> dict:
        """Everything needed to continue stepping: observations, running episode statistics,
        and each env's snapshot (None where the env cannot be restored)."""
        return {"obs": self.obs.copy(), "ret": self._ret.copy(), "len": self._len.copy(),
                "done": [list(self.done_returns), list(self.done_lengths), list(self.done_envs)],
                "envs": [env_state(e) for e in self.envs]}

    def restart(self, epoch: int) -> None:
        """Start every env on a new episode, seeded for ``epoch`` (the resume count)."""
        self.done_returns, self.done_lengths, self.done_envs = [], [], []
        for i in range(self.n):
            self._new_episode(i, epoch)

    def load_state_dict(self, state: dict, epoch: int) -> int:
        """Continue from ``state_dict()``. Envs without a snapshot start a new episode, seeded
        for ``epoch`` (the resume count); returns how many did."""
        if len(state["envs"]) != self.n:
            raise ValueError(f"saved state has {len(state['envs'])} envs, this vector {self.n}")
        self.done_returns, self.done_lengths, self.done_envs = (list(x) for x in state["done"])
        self.restarted = []
        for i, (env, snap) in enumerate(zip(self.envs, state["envs"])):
            if snap is not None and env_restorable(env):
                load_env_state(env, snap)
                self.obs[i] = state["obs"][i]
                self._ret[i], self._len[i] = state["ret"][i], state["len"][i]
            else:
                self._new_episode(i, epoch)
                self.restarted.append(i)
        return len(self.restarted)

    def _new_episode(self, i: int, epoch: int) -> None:
        seed, rank, stream = self._seeding
        self.obs[i], info = self.envs[i].reset(seed=env_seed(seed, rank, i, stream, epoch))
        self.lives[i] = info.get("lives", 0)
        self._ret[i], self._len[i] = 0.0, 0

    def close(self) -> None:
        """Close every env and free it now. An env may sit in a reference cycle (a Box2D
        world's contact listener refers back to its env), which only the cyclic garbage
        collector frees; in a process holding torch it runs rarely, so the envs of every
        evaluation would pile up. Clearing a closed env's attributes breaks such cycles."""
        for env in self.envs:
            env.close()
            vars(env.unwrapped).clear()
        self.envs = []


def is_image(spec: EnvSpec) -> bool:
    """Stacked frames: (channels, height, width) of uint8."""
    return len(spec.obs_shape) == 3 and spec.obs_dtype == np.uint8
