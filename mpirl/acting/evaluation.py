"""Deterministic evaluation episodes, batched across envs."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpirl.acting.envs import EnvRef, EnvVector
from mpirl.nets.actor_critic import ActorCritic
from mpirl.nets.acting import is_recurrent


def play_step(model, envs: EnvVector, rng: np.random.Generator,
              state: np.ndarray | None) -> None:
    """Step every env with the policy's mode. ``state``: a recurrent policy's state
    (``playing_state``), advanced, and zeroed where an episode ended; None otherwise."""
    acting = {} if state is None else {"state": state}
    _, _, terminated, truncated, _ = envs.step(
        model.to_env(model.act(envs.obs, rng, deterministic=True, **acting)))
    if state is not None:
        state[:, terminated | truncated] = 0.0


def playing_state(model, n: int) -> np.ndarray | None:
    """The state a recurrent policy plays ``n`` envs from (None for a feed-forward one)."""
    return model.initial_state(n) if is_recurrent(model) else None


def evaluate_policy(model: ActorCritic, env_id: str | EnvRef, episodes: int, seed: int,
                    index: int = 0, interrupt: Callable[[], object] | None = None
                    ) -> list[float] | None:
    """Returns of ``episodes`` episodes, one per env, acting with the policy's mode.

    ``index`` picks a different repeatable set of start states (one per evaluation round).
    ``interrupt`` is asked before every step; once it returns true the evaluation is given up
    and None returned (a stop signal: long episodes must not hold up the stop's checkpoint).
    """
    envs = EnvVector(env_id, episodes, seed, rank=index, stream="evaluation")
    returns: list[float | None] = [None] * episodes
    rng = np.random.default_rng(0)  # unused by deterministic actions
    state = playing_state(model, episodes)
    try:
        while any(r is None for r in returns):
            if interrupt is not None and interrupt():
                return None
            play_step(model, envs, rng, state)
            done, _ = envs.pop_episodes_by_env()
            for i, ret in done:
                if returns[i] is None:
                    returns[i] = ret
    finally:
        envs.close()
    return [float(r) for r in returns]
