"""Partially observed tasks shipped with mpirl, for recurrent policies to show what memory
buys: ``mpirl/CartPoleNoVel-v1`` is CartPole-v1 (500 steps, solved at 475) whose observations
hold only the cart position and the pole angle. Without the two velocities a feed-forward
policy cannot tell which way the pole is falling; a recurrent one infers them from successive
observations. ``HideVelocity`` makes the same change to any CartPole env, as a wrapper."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

NO_VELOCITY_ID = "mpirl/CartPoleNoVel-v1"


class HideVelocity(gym.ObservationWrapper):
    """CartPole's observation without its velocities: (cart position, pole angle)."""

    KEEP = (0, 2)

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        keep = list(self.KEEP)
        self.observation_space = gym.spaces.Box(space.low[keep], space.high[keep],
                                                dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[list(self.KEEP)]


def cartpole_no_velocity(**kwargs) -> gym.Env:
    """CartPole without velocities (the registered ``mpirl/CartPoleNoVel-v1`` adds its time
    limit); keyword arguments go to CartPole (``render_mode`` for videos)."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv
    return HideVelocity(CartPoleEnv(**kwargs))


def register() -> None:
    if NO_VELOCITY_ID not in gym.registry:
        gym.register(NO_VELOCITY_ID, entry_point=cartpole_no_velocity, max_episode_steps=500,
                     reward_threshold=475.0)
