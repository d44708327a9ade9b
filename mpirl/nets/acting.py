"""Policies that act in numpy: what an acting rank needs of an MLP policy, without torch.

A torch policy module that can act in numpy gives ``acting()``: an ``ActingPolicy`` whose weights
are views of one flat float32 vector laid out as the module's parameters (the order of
``parameters()``, as ``mpirl.comm.FlatParameters`` lays them out). The lead learner builds one
from its module and sends it (pickled, weights included) to the acting ranks at start-up, which
then receive every later weight vector straight into ``vector`` and never import torch: its
import is most of a rank's start-up time. The module itself acts through the same object, bound
to its own parameters' memory, so an actor and a self-acting learner run the same code.

This module must not import torch.
"""
from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2 * math.pi)
# SAC's bounds on the log standard deviation (Haarnoja et al. 2018; as in its reference code)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

# (weight name, bias name, activation after it: "tanh", "relu" or None)
Layer = tuple[str, str, "str | None"]


def activate_(x: np.ndarray, act: str | None) -> None:
    """Apply an activation ("tanh", "relu" or None) to an array in place."""
    if act == "tanh":
        np.tanh(x, out=x)
    elif act == "relu":
        np.maximum(x, 0.0, out=x)


def mlp_np(obs: np.ndarray, layers: list, stats: tuple[np.ndarray, np.ndarray] | None = None,
           clip_obs: float = 10.0) -> np.ndarray:
    """An MLP in numpy over a batch of observations, flattened: ``layers`` of (transposed
    weight, bias, activation name), after normalizing by ``stats`` (mean, var) and clipping
    to +-``clip_obs`` where given."""
    x = obs.astype(np.float32, copy=False)
    if stats is not None:
        mean, var = stats
        x = np.clip((x - mean) / np.sqrt(var + np.float32(1e-8)), -clip_obs, clip_obs)
    x = x.reshape(len(obs), -1)
    for weight_t, bias, act in layers:
        x = x @ weight_t
        x += bias
        activate_(x, act)
    return x


def sample(out: np.ndarray, rng: np.random.Generator, deterministic: bool,
           log_std: np.ndarray | None) -> np.ndarray:
    """Actions from a policy's output: a Categorical over logits (``log_std`` None), or a
    Gaussian around the means; the mode when ``deterministic``."""
    if log_std is None:
        if deterministic:
            return out.argmax(-1)
        p = np.exp(out - out.max(-1, keepdims=True))
        cdf = np.cumsum(p, -1)
        u = rng.random((out.shape[0], 1)) * cdf[:, -1:]
        return np.minimum((cdf < u).sum(-1), out.shape[-1] - 1)
    if deterministic:
        return out.astype(np.float32)
    return (out + np.exp(log_std) * rng.standard_normal(out.shape)).astype(np.float32)


def sample_logp(out: np.ndarray, rng: np.random.Generator, log_std: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``sample``'s draws (not deterministic) and their log-probabilities."""
    actions = sample(out, rng, False, log_std)
    if log_std is None:
        shifted = out - out.max(-1, keepdims=True)
        logp_all = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return actions, logp_all[np.arange(len(out)), actions]
    z = (actions - out) / np.exp(log_std)
    return actions, (-0.5 * z * z - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_to_env(actions: np.ndarray, low: np.ndarray, high: np.ndarray, squash: bool
                    ) -> np.ndarray:
    """Unbounded Gaussian actions into the bounds: clipped, or squashed with tanh and scaled."""
    if squash:
        unit = (np.tanh(actions) + 1.0) * 0.5
        return (low + unit * (high - low)).astype(np.float32)
    return np.clip(actions, low, high).reshape(actions.shape)


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """Logistic function in place, computed through tanh (no overflow for large |x|)."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


def lstm_step_np(x: np.ndarray, state: np.ndarray, w_ih_t: np.ndarray, w_hh_t: np.ndarray,
                 b_ih: np.ndarray, b_hh: np.ndarray) -> np.ndarray:
    """One LSTM step in numpy (torch's gate order: input, forget, cell, output): advances
    ``state`` (2, n, size) in place over inputs ``x`` (n, features); returns the output."""
    H = state.shape[-1]
    gates = x @ w_ih_t
    gates += state[0] @ w_hh_t
    gates += b_ih
    gates += b_hh
    i, f = _sigmoid_(gates[:, :H]), _sigmoid_(gates[:, H:2 * H])
    g, o = np.tanh(gates[:, 2 * H:3 * H]), _sigmoid_(gates[:, 3 * H:])
    c = state[1]
    c *= f
    c += i * g
    state[0] = o * np.tanh(c)
    return state[0]


def lstm_names(prefix: str) -> tuple[str, str, str, str]:
    """The parameter names of a one-layer ``nn.LSTM`` called ``prefix`` in its module, in
    ``lstm_step_np``'s order (its weights are read transposed)."""
    return (f"{prefix}.weight_ih_l0", f"{prefix}.weight_hh_l0", f"{prefix}.bias_ih_l0",
            f"{prefix}.bias_hh_l0")


def require_state(state: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """``state`` if it is a recurrent policy's state of ``shape`` (rows, envs, size), else a
    ValueError that says how to get one."""
    if state is None or state.shape != shape:
        raise ValueError(f"a recurrent policy acts with its state: pass state=, an array "
                         f"{shape} from initial_state({shape[1]})")
    return state


def is_recurrent(model) -> bool:
    """Whether a policy acts with a state it carries from step to step."""
    return getattr(model, "recurrent", False)


def recurrent_state_rows(separate_critic: bool, cnn: bool) -> int:
    """Rows of a recurrent actor-critic's state: (h, c) of the policy's core, and of the
    critic's if it has one (an MLP policy with a separate critic)."""
    return 4 if separate_critic and not cnn else 2


class ActingPolicy:
    """Named weight arrays that are views of one flat float32 vector, ``vector`` (its own, or
    a module's parameters' memory), and the acting methods over them.

    ``layout``: (name, shape) of every parameter, in the module's order. Subclasses read their
    arrays in ``_bound`` (called after every ``bind``) and keep no other weight state.
    Pickling keeps the layout, the settings and a copy of the weights.
    """

    def __init__(self, layout: list[tuple[str, tuple[int, ...]]]):
        self.layout = [(name, tuple(shape)) for name, shape in layout]
        self.size = sum(math.prod(shape) for _, shape in self.layout)
        self.vector = np.zeros(self.size, dtype=np.float32)
        self.bind(self.vector)

    def bind(self, vector: np.ndarray) -> None:
        """Read the weights from ``vector`` (float32, ``size`` values) from now on."""
        if vector.dtype != np.float32 or vector.size < self.size:
            raise ValueError(f"an acting policy needs {self.size} float32 weights, got "
                             f"{vector.size} {vector.dtype}")
        self.vector = vector
        self.arrays: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in self.layout:
            n = math.prod(shape)
            self.arrays[name] = vector[offset:offset + n].reshape(shape)
            offset += n
        self._bound()

    def bind_arrays(self, arrays: list[np.ndarray]) -> None:
        """Read the weights from separate arrays, one per parameter in layout order (a
        module's parameters before they share one flat vector)."""
        self.arrays = {name: a for (name, _), a in zip(self.layout, arrays)}
        self.vector = None
        self._bound()

    def _bound(self) -> None:
        pass

    def _layers(self, layers: list[Layer]) -> list:
        return [(self.arrays[w].T, self.arrays[b], act) for w, b, act in layers]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["vector"] = np.concatenate(
            [self.arrays[name].reshape(-1) for name, _ in self.layout]).astype(np.float32)
        for key in ("arrays", *self._derived):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.bind(state["vector"])

    _derived: tuple[str, ...] = ()  # attributes ``_bound`` sets, rebuilt after unpickling

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions


class ActorCriticActing(ActingPolicy):
    """``mpirl.nets.actor_critic.ActorCritic`` in numpy: its policy and value MLPs, the
    observation statistics, Categorical or Gaussian actions."""

    _derived = ("_pi", "_vf", "_stats", "_log_std")

    def __init__(self, layout, spec, pi: list[Layer], vf: list[Layer], log_std: str | None,
                 stats: tuple[str, str] | None, clip_obs: float, squash: bool):
        self.spec, self.pi, self.vf = spec, pi, vf
        self.log_std_name, self.stats_names = log_std, stats
        self.clip_obs, self.squash = clip_obs, squash
        super().__init__(layout)

    def _bound(self) -> None:
        self._pi, self._vf = self._layers(self.pi), self._layers(self.vf)
        self._stats = None if self.stats_names is None else \
            tuple(self.arrays[n] for n in self.stats_names)
        self._log_std = None if self.log_std_name is None else self.arrays[self.log_std_name]

    def policy_out(self, obs: np.ndarray) -> np.ndarray:
        """Logits, or Gaussian means, for a batch of observations."""
        return mlp_np(obs, self._pi, self._stats, self.clip_obs)

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False
            ) -> np.ndarray:
        return sample(self.policy_out(obs), rng, deterministic, self._log_std)

    def act_logp(self, obs: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        return sample_logp(self.policy_out(obs), rng, self._log_std)

    def predict_values(self, obs: np.ndarray) -> np.ndarray:
        """The (extrinsic) state values, (batch,)."""
        return mlp_np(obs, self._vf, self._stats, self.clip_obs)[:, 0]

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        if self.spec.discrete:
            return actions
        return gaussian_to_env(actions, self.spec.action_low, self.spec.action_high,
                               self.squash)


class QActing(ActingPolicy):
    """``mpirl.algos.dqn.qnetwork.QNetwork`` in numpy: greedy actions of its Q-values."""

    _derived = ("_body", "_head", "_value")

    def __init__(self, layout, body: list[Layer], head: Layer, value: Layer | None):
        self.body, self.head, self.value = body, head, value
        super().__init__(layout)

    def _bound(self) -> None:
        self._body = self._layers(self.body)
        self._head = self._layers([self.head])
        self._value = None if self.value is None else self._layers([self.value])

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        x = mlp_np(obs, self._body)
        q = mlp_np(x, self._head)
        if self._value is not None:
            q = mlp_np(x, self._value) + q - q.mean(-1, keepdims=True)
        return q

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = True) -> np.ndarray:
        """Greedy actions (exploration is the collector's job)."""
        return self.q_values(obs).argmax(-1)


class SquashedActing(ActingPolicy):
    """``mpirl.nets.continuous.ContinuousPolicy`` in numpy: actions in [-1, 1]^A, tanh of the
    output (deterministic) or of a Gaussian sample (stochastic), and their scaling into the
    env's bounds."""

    _derived = ("_pi",)

    def __init__(self, layout, spec, pi: list[Layer], stochastic: bool):
        self.spec, self.pi, self.stochastic = spec, pi, stochastic
        self.n_actions = spec.n_actions
        self._low = np.asarray(spec.action_low, dtype=np.float32)
        self._scale = (np.asarray(spec.action_high, dtype=np.float32) - self._low) / 2.0
        super().__init__(layout)

    def _bound(self) -> None:
        self._pi = self._layers(self.pi)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = False) -> np.ndarray:
        out = mlp_np(obs, self._pi)
        if not self.stochastic:
            return np.tanh(out)
        mean = out[:, :self.n_actions]
        if deterministic or rng is None:
            return np.tanh(mean)
        log_std = np.clip(out[:, self.n_actions:], LOG_STD_MIN, LOG_STD_MAX)
        noise = rng.standard_normal(mean.shape, dtype=np.float32)
        return np.tanh(mean + np.exp(log_std) * noise)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return (self._low + (np.asarray(actions, dtype=np.float32) + 1.0) * self._scale
                ).reshape(len(actions), *self.spec.action_shape)


class _Recurrent(ActingPolicy):
    """What the recurrent twins share: LSTM cores of ``lstm_size`` units over MLP encoders,
    and a state of ``state_rows`` rows (h, c of each core) of (envs, lstm_size)."""

    recurrent = True
    _derived = ("_cores", "_stats")
    stats_names: tuple[str, str] | None = None
    clip_obs = 10.0

    def __init__(self, layout, cores: list[tuple[list[Layer], tuple[str, ...]]],
                 lstm_size: int):
        self.cores, self.lstm_size = cores, lstm_size
        self.state_rows = 2 * len(cores)
        super().__init__(layout)

    def _bound(self) -> None:
        a = self.arrays
        self._cores = [(self._layers(trunk), (a[w_ih].T, a[w_hh].T, a[b_ih], a[b_hh]))
                       for trunk, (w_ih, w_hh, b_ih, b_hh) in self.cores]
        self._stats = None if self.stats_names is None else \
            tuple(a[n] for n in self.stats_names)

    def initial_state(self, n: int) -> np.ndarray:
        """The state of ``n`` envs at an episode's start: zeros."""
        return np.zeros((self.state_rows, n, self.lstm_size), dtype=np.float32)

    def _require(self, state: np.ndarray | None, n: int) -> np.ndarray:
        return require_state(state, (self.state_rows, n, self.lstm_size))

    def _step(self, obs: np.ndarray, state: np.ndarray) -> list[np.ndarray]:
        """Advance ``state`` in place over ``obs``; each core's output (n, lstm_size)."""
        return [lstm_step_np(mlp_np(obs, trunk, self._stats, self.clip_obs),
                             state[2 * i:2 * i + 2], *core)
                for i, (trunk, core) in enumerate(self._cores)]

    def _head(self, hidden: np.ndarray, head: tuple[str, str]) -> np.ndarray:
        return hidden @ self.arrays[head[0]].T + self.arrays[head[1]]


class RecurrentActorCriticActing(_Recurrent):
    """``mpirl.nets.recurrent.RecurrentActorCritic`` (MLP encoder) in numpy: one core, or a
    second for the critic; Categorical or Gaussian actions."""

    _derived = ("_cores", "_stats", "_log_std")

    def __init__(self, layout, spec, cores, lstm_size: int, pi: tuple[str, str],
                 vf: tuple[str, str], log_std: str | None, stats: tuple[str, str] | None,
                 clip_obs: float, squash: bool):
        self.spec, self.pi, self.vf = spec, pi, vf
        self.log_std_name, self.stats_names = log_std, stats
        self.clip_obs, self.squash = clip_obs, squash
        super().__init__(layout, cores, lstm_size)

    def _bound(self) -> None:
        super()._bound()
        self._log_std = None if self.log_std_name is None else self.arrays[self.log_std_name]

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False,
            state: np.ndarray | None = None) -> np.ndarray:
        """Actions for a batch of observations, advancing ``state`` (one column per env) in
        place."""
        hidden = self._step(obs, self._require(state, len(obs)))[0]
        return sample(self._head(hidden, self.pi), rng, deterministic, self._log_std)

    def act_logp(self, obs: np.ndarray, rng: np.random.Generator,
                 state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        hidden = self._step(obs, self._require(state, len(obs)))[0]
        return sample_logp(self._head(hidden, self.pi), rng, self._log_std)

    def predict_values(self, obs: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """The (extrinsic) values of ``obs`` seen from ``state`` (left unchanged)."""
        scratch = self._require(state, len(obs)).copy()
        return self._head(self._step(obs, scratch)[-1], self.vf)[:, 0]

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        if self.spec.discrete:
            return actions
        return gaussian_to_env(actions, self.spec.action_low, self.spec.action_high,
                               self.squash)


class RecurrentQActing(_Recurrent):
    """``mpirl.algos.r2d2.network.RecurrentQNetwork`` (MLP encoder) in numpy: Q-values of
    each step, advancing the state; greedy actions."""

    def __init__(self, layout, cores, lstm_size: int, head: tuple[str, str],
                 value: tuple[str, str] | None):
        self.head, self.value = head, value
        super().__init__(layout, cores, lstm_size)

    def q_np(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Q-values (n, actions) of ``obs`` (n, ...), advancing ``state`` (2, n, size) in
        place."""
        hidden = self._step(obs, state)[0]
        q = self._head(hidden, self.head)
        if self.value is not None:
            q = self._head(hidden, self.value) + q - q.mean(-1, keepdims=True)
        return q

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = True, state: np.ndarray | None = None) -> np.ndarray:
        """Greedy actions, advancing ``state`` (exploration is the collector's job)."""
        return self.q_np(obs, self._require(state, len(obs))).argmax(-1)
