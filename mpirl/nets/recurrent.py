"""Recurrent actor-critics: an encoder (an MLP over the flattened observation, or the Nature
CNN over stacked frames), an LSTM core, and policy and value heads on the core's output.

The recurrent state is explicit: whoever acts holds it, one (h, c) pair per env as an array
(2, envs, ``lstm_size``) from ``initial_state``, passes it to ``act`` (which advances it in
place) and zeroes an env's state where its episode ends. A learner runs the core over a whole
unroll from the state the actor had at its start (``unroll``), zeroing the state after every
step that ended an episode, exactly as the actor did, so its outputs are the actor's.

Actors of the MLP version step the core in numpy (its twin in ``mpirl.nets.acting``), as
feed-forward actors run their MLP: at an actor's handful of rows torch's fixed cost per call
would dominate. The CNN version's actors run the trunk in torch and the core in numpy.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mpirl.acting.envs import EnvSpec
from mpirl.nets.acting import (RecurrentActorCriticActing, is_recurrent,  # noqa: F401
                               lstm_names, lstm_step_np, recurrent_state_rows,
                               require_state, sample, sample_logp)
from mpirl.nets.actor_critic import ActorCritic, cnn_features, nature_cnn
from mpirl.nets.mlp import linear_stack, mlp, parameter_layout, stack_names


def lstm(features: int, size: int) -> nn.LSTM:
    """A one-layer LSTM core: orthogonal weights, zero biases but for the forget gate's (1 in
    all: the state is kept until the core learns otherwise)."""
    core = nn.LSTM(features, size)
    for name, weight in core.named_parameters():
        if name.startswith("weight"):
            nn.init.orthogonal_(weight)
        else:  # the two bias vectors add up
            nn.init.zeros_(weight)
            weight.data[size:2 * size] = 0.5
    return core


def run_core(core: nn.LSTM, x: torch.Tensor, state: torch.Tensor,
             zero_before: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``core`` over inputs ``x`` (L, N, features) from ``state`` (2, N, size), an env's state
    zeroed before step t where ``zero_before[t]`` (L, N) is nonzero. Returns the outputs
    (L, N, size) and the state after the last step (2, N, size).

    The core runs over the stretches between the steps where some env's state is zeroed: one
    fused LSTM call per stretch, not one cell call per step."""
    L = x.shape[0]
    h, c = state[0:1], state[1:2]
    cuts: list[int] = []
    if zero_before is not None:
        cuts = torch.nonzero(zero_before.any(1)).flatten().tolist()
    outputs, start = [], 0
    for end in [t for t in cuts if t > 0] + [L]:
        if start in cuts:
            keep = (1.0 - zero_before[start].float()).unsqueeze(-1)
            h, c = h * keep, c * keep
        y, (h, c) = core(x[start:end], (h, c))
        outputs.append(y)
        start = end
    return torch.cat(outputs), torch.cat([h, c])


def core_arrays(core: nn.LSTM) -> tuple[np.ndarray, ...]:
    """``lstm_step_np``'s weight arguments: views of a CPU core's parameters (they change in
    place with every update; a copy would go stale)."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()
    return (arr(core.weight_ih_l0).T, arr(core.weight_hh_l0).T, arr(core.bias_ih_l0),
            arr(core.bias_hh_l0))


class RecurrentActorCritic(ActorCritic):
    """Encoder, LSTM core (``lstm_size`` units) and linear policy and value heads.

    The encoder is an MLP of ``hidden_sizes`` with the activation after every layer, or
    (``cnn``) the Nature CNN over uint8 frame stacks (``precision`` as ``CNNActorCritic``). With
    ``separate_critic`` an MLP policy's critic has its own encoder and core, as the feed-forward
    MLP actor-critic has separate networks (with one core for both heads, the value's
    regression, whose gradient dwarfs the policy's on unnormalized advantages, shapes most of
    it); the CNN shares its trunk and core between the heads. The state holds (h, c) of each
    core: ``state_rows`` = 4 or 2 rows of (envs, lstm_size). The other arguments are
    ``ActorCritic``'s.
    """

    recurrent = True

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "tanh",
                 lstm_size: int = 64, cnn: bool = False, precision: str = "fp32",
                 separate_critic: bool = True, **kwargs):
        self.lstm_size, self.cnn, self.precision = lstm_size, cnn, precision
        self.separate = separate_critic and not cnn
        self.state_rows = self.rows(separate_critic, cnn)
        super().__init__(spec, hidden_sizes, activation, **kwargs)

    rows = staticmethod(recurrent_state_rows)

    def _build(self, spec: EnvSpec, obs_dim: int, hidden_sizes: list[int], act) -> None:
        if self.cnn:
            self.trunk, features = nature_cnn(spec.obs_shape), 512
        else:
            def encoder() -> nn.Sequential:  # every layer followed by the activation
                return nn.Sequential(*mlp([obs_dim, *hidden_sizes, hidden_sizes[-1]], act,
                                          out_gain=1.0)[:-1])
            self.trunk, features = encoder(), hidden_sizes[-1]
            if self.separate:
                self.vf_trunk, self.vf_core = encoder(), lstm(features, self.lstm_size)
        self.core = lstm(features, self.lstm_size)
        self.pi = mlp([self.lstm_size, spec.n_actions], act, out_gain=0.01)
        self.vf = mlp([self.lstm_size, self.value_heads], act, out_gain=1.0)

    # ------------------------------------------------------------------ learners
    def _features(self, obs: torch.Tensor, trunk: nn.Module | None = None) -> torch.Tensor:
        """An encoder's output (the policy's, or ``trunk``) for a flat batch of
        observations."""
        x = self._input(obs)
        if not self.cnn:
            return (trunk or self.trunk)(x.reshape(obs.shape[0], -1))
        return cnn_features(self.trunk, x, self.obs_norm, self.precision)

    def unroll(self, obs: torch.Tensor, state: torch.Tensor, resets: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy outputs and values over an unroll: ``obs`` (L, N, ...) from ``state``
        (state_rows, N, lstm_size), the state zeroed after step t where ``resets[t]``
        (L - 1, N) is nonzero. Returns them flat in (step, env) order: (L x N, ...), as
        ``forward`` gives them for a flat batch."""
        L, N = obs.shape[:2]
        flat = obs.reshape((L * N,) + tuple(obs.shape[2:]))
        zero_before = None
        if resets is not None:  # zeroed after step t = before step t + 1
            zero_before = torch.cat([torch.zeros_like(resets[:1]), resets[:L - 1]])
        x = self._features(flat).reshape(L, N, -1)
        hidden, _ = run_core(self.core, x, state[0:2], zero_before)
        critic = hidden
        if self.separate:
            x = self._features(flat, self.vf_trunk).reshape(L, N, -1)
            critic, _ = run_core(self.vf_core, x, state[2:4], zero_before)
        return (self.pi(hidden.reshape(L * N, -1)),
                self._values(self.vf(critic.reshape(L * N, -1))))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from the zero state for a flat batch (the first step of an episode); an
        unroll goes through ``unroll``."""
        state = torch.zeros(self.state_rows, obs.shape[0], self.lstm_size, device=obs.device)
        return self.unroll(obs.unsqueeze(0), state, None)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward(obs)[1].reshape(obs.shape[0], -1)[:, 0]

    # ------------------------------------------------------------------ actors
    _arrays = None  # the CNN version's views of its core and heads

    def initial_state(self, n: int) -> np.ndarray:
        """The state of ``n`` envs at an episode's start: (state_rows, n, lstm_size) zeros."""
        return np.zeros((self.state_rows, n, self.lstm_size), dtype=np.float32)

    def _make_acting(self) -> RecurrentActorCriticActing | None:
        if self.cnn:
            return None  # the trunk runs in torch
        cores = [(stack_names(self.trunk, "trunk"), lstm_names("core"))]
        if self.separate:
            cores.append((stack_names(self.vf_trunk, "vf_trunk"), lstm_names("vf_core")))
        head = [(w, b) for w, b, _ in (stack_names(self.pi, "pi") + stack_names(self.vf, "vf"))]
        return RecurrentActorCriticActing(
            parameter_layout(self), self.spec, cores, self.lstm_size, head[0], head[1],
            None if self.spec.discrete else "log_std",
            ("normalizer.mean", "normalizer.var") if self.obs_norm else None, self.clip_obs,
            self.squash)

    def _core_arrays(self):
        ptrs = [p.data_ptr() for p in self.parameters()]
        if self._arrays is None or self._arrays[0] != ptrs:  # the parameters moved: re-view
            def arr(t: torch.Tensor) -> np.ndarray:
                return t.detach().numpy()
            heads = [(arr(lin.weight).T, arr(lin.bias)) for lin, _ in
                     (linear_stack(self.pi)[0], linear_stack(self.vf)[0])]
            self._arrays = (ptrs, core_arrays(self.core), heads)
        return self._arrays[1:]

    def _step_cnn(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Advance ``state`` in place over frames ``obs`` (n, ...); the core's output."""
        with torch.inference_mode():
            x = self._features(torch.from_numpy(obs)).numpy()
        return lstm_step_np(x, state[0:2], *self._core_arrays()[0])

    def _require(self, state: np.ndarray | None, n: int) -> np.ndarray:
        return require_state(state, (self.state_rows, n, self.lstm_size))

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False,
            state: np.ndarray | None = None) -> np.ndarray:
        """Actions for a batch of observations, advancing ``state`` (one column per env) in
        place."""
        twin = self.acting()
        if twin is not None:
            return twin.act(obs, rng, deterministic, state)
        hidden = self._step_cnn(obs, self._require(state, len(obs)))
        return sample(self._head_np(hidden, 0), rng, deterministic, self._log_std_np())

    def act_logp(self, obs: np.ndarray, rng: np.random.Generator,
                 state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        twin = self.acting()
        if twin is not None:
            return twin.act_logp(obs, rng, state)
        hidden = self._step_cnn(obs, self._require(state, len(obs)))
        return sample_logp(self._head_np(hidden, 0), rng, self._log_std_np())

    def _head_np(self, hidden: np.ndarray, which: int) -> np.ndarray:
        weight_t, bias = self._core_arrays()[1][which]
        return hidden @ weight_t + bias

    def predict_values(self, obs: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """The (extrinsic) values of ``obs`` seen from ``state`` (left unchanged)."""
        twin = self.acting()
        if twin is not None:
            return twin.predict_values(obs, state)
        scratch = self._require(state, len(obs)).copy()
        return self._head_np(self._step_cnn(obs, scratch), 1)[:, 0]
