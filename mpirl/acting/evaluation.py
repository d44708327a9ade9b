"""Deterministic evaluation episodes, batched across envs."""
from __future__ import annotations

import numpy as np

from mpirl.acting.envs import EnvRef, EnvVector
from mpirl.nets.actor_critic import ActorCritic


def evaluate_policy(model: ActorCritic, env_id: str | EnvRef, episodes: int, seed: int,
                    index: int = 0) -> list[float]:
    """Returns of ``episodes`` episodes, one per env, acting with the policy's mode.

    ``index`` picks a different repeatable set of start states (one per evaluation round).
    """
    envs = EnvVector(env_id, episodes, seed, rank=index, stream="evaluation")
    returns: list[float | None] = [None] * episodes
    rng = np.random.default_rng(0)  # unused by deterministic actions
    try:
        while any(r is None for r in returns):
            envs.step(model.to_env(model.act(envs.obs, rng, deterministic=True)))
            done, _ = envs.pop_episodes_by_env()
            for i, ret in done:
                if returns[i] is None:
                    returns[i] = ret
    finally:
        envs.close()
    return [float(r) for r in returns]
