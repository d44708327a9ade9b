"""Collecting one on-policy rollout from an env vector with the current policy."""
from __future__ import annotations

import numpy as np

from mpirl import timing
from mpirl.envs import EnvVector
from mpirl.models import ActorCritic, env_actions
from mpirl.rollout import PackedArrays


class RolloutCollector:
    """Steps ``envs`` for ``n_steps`` with ``model`` and writes the rollout into a packed buffer.

    A truncated episode (time limit) is bootstrapped here: gamma x V(final observation) is added
    to its last reward, so learners can treat every episode end alike.
    """

    def __init__(self, model: ActorCritic, envs: EnvVector, n_steps: int, gamma: float,
                 rng: np.random.Generator):
        self.model, self.envs, self.n_steps, self.gamma, self.rng = model, envs, n_steps, gamma, rng

    def collect(self, out: PackedArrays) -> None:
        spec, envs = self.envs.spec, self.envs
        obs, actions, rewards, dones = out["obs"], out["actions"], out["rewards"], out["dones"]
        for t in range(self.n_steps):
            obs[t] = envs.obs
            timing.switch("inference")
            a = self.model.act(envs.obs, self.rng)
            actions[t] = a
            timing.switch("env")
            _, r, terminated, truncated, final_obs = envs.step(env_actions(spec, a))
            if final_obs:
                timing.switch("inference")
                idx = list(final_obs)
                bootstrap = self.model.predict_values(np.stack([final_obs[i] for i in idx]))
                r[idx] += self.gamma * bootstrap
            rewards[t] = r
            dones[t] = terminated | truncated
        obs[self.n_steps] = envs.obs
        returns, lengths = envs.pop_episodes()
        out["episodes"][:] = (len(returns), sum(returns), sum(lengths))

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "envs": self.envs.state_dict()}

    def load_state_dict(self, state: dict, epoch: int) -> int:
        """Continue from ``state_dict()``; returns how many envs had to start a new episode."""
        self.rng.bit_generator.state = state["rng"]
        return self.envs.load_state_dict(state["envs"], epoch)
