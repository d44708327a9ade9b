"""R2D2's network: an encoder (MLP, or the Nature CNN over frame stacks), an LSTM core, and
action values from the core's output (optionally dueling).

As with the recurrent actor-critics (``mpirl.nets.recurrent``), the state is explicit: actors
hold one (h, c) per env and step the core in numpy (``q_np``); learners unroll it over stored
sequences from the state stored with their first step (``unroll``)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mpirl.acting.envs import EnvSpec
from mpirl.nets.acting import RecurrentQActing, lstm_names
from mpirl.nets.actor_critic import is_image, nature_cnn
from mpirl.nets.mlp import ActsInNumpy, linear_stack, mlp, parameter_layout, stack_names
from mpirl.nets.recurrent import core_arrays, lstm, lstm_step_np, run_core


class RecurrentQNetwork(ActsInNumpy, nn.Module):
    recurrent = True

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "relu",
                 lstm_size: int = 64, dueling: bool = False):
        super().__init__()
        if not spec.discrete:
            raise ValueError("a Q-network needs a Discrete action space")
        self.spec, self.lstm_size, self.dueling = spec, lstm_size, dueling
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        self.cnn = is_image(spec)
        if self.cnn:
            self.trunk, features = nature_cnn(spec.obs_shape), 512
        else:
            obs_dim = int(np.prod(spec.obs_shape))
            self.trunk = nn.Sequential(*mlp([obs_dim, *hidden_sizes, hidden_sizes[-1]], act,
                                            out_gain=math.sqrt(2))[:-1])
            features = hidden_sizes[-1]
        self.core = lstm(features, lstm_size)
        self.head = mlp([lstm_size, spec.n_actions], act, out_gain=1.0)
        if dueling:
            self.value_head = mlp([lstm_size, 1], act, out_gain=1.0)
        self._arrays = None

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((2, n, self.lstm_size), dtype=np.float32)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        if self.cnn:
            return self.trunk(obs.float() * (1.0 / 255.0))
        return self.trunk(obs.reshape(obs.shape[0], -1).float())

    def _q(self, hidden: torch.Tensor) -> torch.Tensor:
        q = self.head(hidden)
        if self.dueling:
            q = self.value_head(hidden) + q - q.mean(-1, keepdim=True)
        return q

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, firsts: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values (L, N, actions) over ``obs`` (L, N, ...) from ``state`` (2, N, size), an
        env's state zeroed before step t where ``firsts[t]`` (L, N) marks the first step of an
        episode; and the state after the last step."""
        L, N = obs.shape[:2]
        x = self._features(obs.reshape((L * N,) + tuple(obs.shape[2:]))).reshape(L, N, -1)
        hidden, last = run_core(self.core, x, state, firsts)
        return self._q(hidden), last

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values of a flat batch seen from the zero state (the first step of episodes)."""
        state = torch.zeros(2, obs.shape[0], self.lstm_size, device=obs.device)
        return self.unroll(obs.unsqueeze(0), state, None)[0][0]

    # ------------------------------------------------------------------ actors
    def _make_acting(self) -> RecurrentQActing | None:
        if self.cnn:
            return None  # the trunk runs in torch
        heads = [(w, b) for w, b, _ in stack_names(self.head, "head") +
                 (stack_names(self.value_head, "value_head") if self.dueling else [])]
        return RecurrentQActing(parameter_layout(self),
                                [(stack_names(self.trunk, "trunk"), lstm_names("core"))],
                                self.lstm_size, heads[0], heads[1] if self.dueling else None)

    def _views(self):
        ptrs = [p.data_ptr() for p in self.parameters()]
        if self._arrays is None or self._arrays[0] != ptrs:  # the parameters moved: re-view
            def arr(t):
                return t.detach().numpy()
            heads = [(arr(lin.weight).T, arr(lin.bias)) for lin, _ in
                     [linear_stack(self.head)[0]] +
                     ([linear_stack(self.value_head)[0]] if self.dueling else [])]
            self._arrays = (ptrs, core_arrays(self.core), heads)
        return self._arrays[1:]

    def q_np(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Q-values (n, actions) of ``obs`` (n, ...), advancing ``state`` (2, n, size) in
        place."""
        twin = self.acting()
        if twin is not None:
            return twin.q_np(obs, state)
        core, heads = self._views()
        with torch.inference_mode():
            x = self._features(torch.from_numpy(obs)).numpy()
        hidden = lstm_step_np(x, state, *core)
        q = hidden @ heads[0][0] + heads[0][1]
        if self.dueling:
            q = (hidden @ heads[1][0] + heads[1][1]) + q - q.mean(-1, keepdims=True)
        return q

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = True, state: np.ndarray | None = None) -> np.ndarray:
        """Greedy actions, advancing ``state`` (exploration is the collector's job)."""
        if state is None or state.shape != (2, len(obs), self.lstm_size):
            raise ValueError(f"a recurrent policy acts with its state: pass state=, an array "
                             f"(2, {len(obs)}, {self.lstm_size}) from initial_state")
        return self.q_np(obs, state).argmax(-1)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions
