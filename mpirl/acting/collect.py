"""Collecting experience from an env vector: on-policy rollouts (actor-critics) and chunks of
replay rows acted by a policy with its exploration (the replay-based algorithms). An algorithm
picks one (or brings its own with the same ``collect``, ``state_dict``, ``load_state_dict``
and ``envs``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from mpirl.acting.envs import EnvVector
from mpirl.acting.messages import PackedArrays
from mpirl.nets.acting import is_recurrent
from mpirl.replay import ENDED, TERMINATED, VALID
from mpirl.runtime import timing

if TYPE_CHECKING:
    from mpirl.nets.acting import ActorCriticActing
    from mpirl.nets.actor_critic import ActorCritic


class RolloutCollector:
    """Steps ``envs`` for ``n_steps`` with ``model`` and writes the rollout into a packed buffer.

    A truncated episode (time limit) is bootstrapped here: gamma x V(final observation) goes into
    ``bootstrap`` at its last step, which learners add to the (possibly scaled) reward, so they
    can treat every episode end alike.

    For Atari training, ``clip_rewards`` sends sign(reward), and ``episodic_life`` marks a lost
    life as an episode end for the returns (the game itself goes on); the episode statistics
    always count true game returns. A message with a ``logp`` field also gets the behaviour
    policy's log-probability of each action.

    A collector with ``min_steps`` may end a rollout early, once it has that many steps, when
    ``collect``'s ``cut()`` says so; ``out["length"]`` then says how many it holds, and the
    observation after the last one is at that index.

    With a recurrent policy (``mpirl.nets.recurrent``) the collector holds each env's state,
    zeroes it where an episode ends, and writes into the message the state at the rollout's
    start (``state``) and the steps after which it was zeroed (``resets``): what a learner
    needs to run the core over the rollout as the actor did.
    """

    def __init__(self, model: ActorCritic | ActorCriticActing, envs: EnvVector, n_steps: int,
                 gamma: float, rng: np.random.Generator, clip_rewards: bool = False,
                 episodic_life: bool = False, min_steps: int | None = None):
        self.model, self.envs, self.n_steps, self.gamma, self.rng = model, envs, n_steps, gamma, rng
        self.clip_rewards, self.episodic_life = clip_rewards, episodic_life
        self.min_steps = min_steps
        self.state = model.initial_state(envs.n) if is_recurrent(model) else None

    def collect(self, out: PackedArrays, progress: float = 0.0,
                cut: Callable[[], bool] | None = None) -> None:
        """``progress`` (fraction of the budget done) is unused: the policy explores itself.
        ``cut``: asked after each step past ``min_steps`` whether to end the rollout there."""
        envs, model = self.envs, self.model
        obs, actions, rewards, dones = out["obs"], out["actions"], out["rewards"], out["dones"]
        bootstrap = out["bootstrap"]
        bootstrap[:] = 0.0
        logp = out.views.get("logp")
        state = self.state
        acting = {} if state is None else {"state": state}
        if state is not None:
            out["state"][:] = state
            resets = out["resets"]
            resets[:] = 0.0
        length = self.n_steps
        check_from = self.n_steps if cut is None or self.min_steps is None else self.min_steps
        for t in range(self.n_steps):
            if t >= check_from and cut():
                length = t
                rewards[t:] = 0.0
                dones[t:] = 0.0
                break
            obs[t] = envs.obs
            timing.switch("inference")
            if logp is None:
                a = model.act(envs.obs, self.rng, **acting)
            else:
                a, logp[t] = model.act_logp(envs.obs, self.rng, **acting)
            actions[t] = a
            timing.switch("env")
            _, r, terminated, truncated, final_obs = envs.step(model.to_env(a))
            if final_obs:
                timing.switch("inference")
                idx = list(final_obs)
                seen = {} if state is None else {"state": state[:, idx]}
                values = model.predict_values(np.stack([final_obs[i] for i in idx]), **seen)
                bootstrap[t, idx] = self.gamma * values
            rewards[t] = np.sign(r) if self.clip_rewards else r
            dones[t] = terminated | truncated
            if state is not None:  # a new episode starts from the zero state
                ended = terminated | truncated
                state[:, ended] = 0.0
                resets[t] = ended
            if self.episodic_life:
                dones[t] = np.maximum(dones[t], envs.life_lost)
        obs[length] = envs.obs
        if "length" in out.views:
            out["length"][0] = length
        returns, lengths = envs.pop_episodes()
        out["episodes"][:] = (len(returns), sum(returns), sum(lengths))

    def state_dict(self) -> dict:
        state = {"rng": self.rng.bit_generator.state, "envs": self.envs.state_dict()}
        if self.state is not None:
            state["recurrent"] = self.state.copy()
        return state

    def load_state_dict(self, state: dict, epoch: int) -> int:
        """Continue from ``state_dict()``; returns how many envs had to start a new episode."""
        self.rng.bit_generator.state = state["rng"]
        restarted = self.envs.load_state_dict(state["envs"], epoch)
        if self.state is not None:
            saved = state.get("recurrent")
            if saved is not None and saved.shape == self.state.shape:
                self.state[:] = saved
            self.state[:, self.envs.restarted] = 0.0  # envs on a new episode start afresh
        return restarted


class TransitionCollector:
    """Steps ``envs`` for ``n_steps`` and writes a chunk of replay rows
    (``mpirl.acting.messages.transition_fields``), with the actions ``choose(obs, progress)``
    picks (a policy with its exploration, drawing from ``rng``; ``progress``: the fraction
    of the budget done).

    An episode cut off by a time limit is followed by a reset row in its env's stream: the row
    holds the episode's final observation (the bootstrap target of the step before), no
    transition, and that env is not stepped for it. Terminated episodes need no such row.
    """

    def __init__(self, envs: EnvVector, n_steps: int, rng: np.random.Generator,
                 choose: Callable[[np.ndarray, float], np.ndarray]):
        self.envs, self.n_steps, self.rng, self.choose = envs, n_steps, rng, choose
        # envs whose next row is a reset row, with the final observation it shows
        self.final_obs: dict[int, np.ndarray] = {}

    def collect(self, out: PackedArrays, progress: float) -> None:
        envs, n = self.envs, self.envs.n
        obs, actions, rewards, flags = out["obs"], out["actions"], out["rewards"], out["flags"]
        hold = np.zeros(n, dtype=bool)
        for t in range(self.n_steps):
            obs[t] = envs.obs
            hold[:] = False
            for i, final in self.final_obs.items():
                obs[t, i] = final
                hold[i] = True
            self.final_obs = {}
            timing.switch("inference")
            a = self.choose(envs.obs, progress)
            actions[t] = a
            timing.switch("env")
            _, r, terminated, truncated, final_obs = envs.step(self.to_env(a), hold)
            rewards[t] = r
            flags[t] = np.where(hold, 0, VALID | np.where(terminated, TERMINATED | ENDED,
                                                          np.where(truncated, ENDED, 0)))
            self.final_obs = final_obs
        returns, lengths = envs.pop_episodes()
        out["episodes"][:] = (len(returns), sum(returns), sum(lengths))

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """What the env receives for the chosen actions (the chooser's ``to_env`` if it has
        one: continuous actions scaled into the env's bounds)."""
        convert = getattr(self.choose, "to_env", None)
        return actions if convert is None else convert(actions)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "envs": self.envs.state_dict(),
                "final_obs": dict(self.final_obs)}

    def load_state_dict(self, state: dict, epoch: int) -> int:
        self.rng.bit_generator.state = state["rng"]
        self.final_obs = dict(state.get("final_obs", {}))
        return self.envs.load_state_dict(state["envs"], epoch)
