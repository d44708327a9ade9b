"""What R2D2's acting ranks collect: chunks of steps for the sequence replay, each step with the
recurrent state the actor had before it and the actor's Q-values of it."""
from __future__ import annotations

from typing import Callable

import numpy as np

from mpirl.acting.envs import EnvSpec, EnvVector
from mpirl.acting.messages import Fields, PackedArrays
from mpirl.replay import ENDED, TERMINATED, VALID
from mpirl.runtime import timing


def sequence_fields(spec: EnvSpec, n_steps: int, n_envs: int, state_size: int) -> Fields:
    """One chunk of ``n_steps`` steps from ``n_envs`` envs, laid out as the sequence replay's
    steps (``mpirl.replay.sequences``)."""
    T, N = n_steps, n_envs
    return {"obs": ((T, N, *spec.obs_shape), spec.obs_dtype),
            "actions": ((T, N), np.dtype(np.int64)),
            "rewards": ((T, N), np.dtype(np.float32)),
            "flags": ((T, N), np.dtype(np.uint8)),
            "firsts": ((T, N), np.dtype(np.uint8)),
            "states": ((T, N, 2, state_size), np.dtype(np.float32)),
            "q_taken": ((T, N), np.dtype(np.float32)),
            "q_max": ((T, N), np.dtype(np.float32))}


class SequenceCollector:
    """Steps ``envs`` for ``n_steps`` with a recurrent Q-network, epsilon-greedy
    (``epsilon_at(progress)``), and writes a chunk of steps.

    As with ``TransitionCollector``, an episode cut off by a time limit is followed by a step
    that holds its final observation and no transition (the env is not stepped for it): the
    network sees it from the episode's state, and its Q-value bootstraps the cut-off step. A
    step marked in ``firsts`` starts an episode, from the zero state."""

    def __init__(self, model, envs: EnvVector, n_steps: int, rng: np.random.Generator,
                 epsilon_at: Callable[[float], float]):
        self.model, self.envs, self.n_steps, self.rng = model, envs, n_steps, rng
        self.epsilon_at = epsilon_at
        self.state = model.initial_state(envs.n)
        self.first = np.ones(envs.n, dtype=bool)
        self.final_obs: dict[int, np.ndarray] = {}

    def collect(self, out: PackedArrays, progress: float) -> None:
        envs, model, n = self.envs, self.model, self.envs.n
        rows = np.arange(n)
        hold = np.zeros(n, dtype=bool)
        epsilon = self.epsilon_at(progress)
        for t in range(self.n_steps):
            obs = out["obs"][t]
            obs[:] = envs.obs
            hold[:] = False
            for i, final in self.final_obs.items():
                obs[i] = final
                hold[i] = True
            out["firsts"][t] = self.first
            out["states"][t] = self.state.transpose(1, 0, 2)
            timing.switch("inference")
            q = model.q_np(obs, self.state)
            a = q.argmax(-1)
            explore = self.rng.random(n) < epsilon
            if explore.any():
                a[explore] = self.rng.integers(0, q.shape[1], int(explore.sum()))
            out["actions"][t] = a
            out["q_taken"][t] = q[rows, a]
            out["q_max"][t] = q.max(-1)
            timing.switch("env")
            _, r, terminated, truncated, final_obs = envs.step(a, hold)
            out["rewards"][t] = r
            out["flags"][t] = np.where(hold, 0, VALID | np.where(
                terminated, TERMINATED | ENDED, np.where(truncated, ENDED, 0)))
            self.final_obs = final_obs
            # the next step starts an episode after a termination or a final-observation step
            self.first = terminated | hold
            self.state[:, self.first] = 0.0
        returns, lengths = envs.pop_episodes()
        out["episodes"][:] = (len(returns), sum(returns), sum(lengths))

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "envs": self.envs.state_dict(),
                "final_obs": dict(self.final_obs), "recurrent": self.state.copy(),
                "first": self.first.copy()}

    def load_state_dict(self, state: dict, epoch: int) -> int:
        self.rng.bit_generator.state = state["rng"]
        self.final_obs = dict(state.get("final_obs", {}))
        restarted = self.envs.load_state_dict(state["envs"], epoch)
        if state["recurrent"].shape == self.state.shape:
            self.state[:] = state["recurrent"]
            self.first[:] = state["first"]
        for i in self.envs.restarted:  # a new episode from the zero state
            self.state[:, i] = 0.0
            self.first[i] = True
            self.final_obs.pop(i, None)
        return restarted
