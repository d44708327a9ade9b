"""Actor-critics: separate policy and value MLPs over the flattened observation, or policy and
value heads on a shared Nature CNN for image stacks such as Atari frames; a Categorical head for
Discrete actions and a Gaussian head (state-independent log-std) for Box actions.

An actor-critic can carry observation-normalization statistics as non-trainable parameters at
the end of its parameter list: they travel with the weights to actors, are saved with the
policy, and are applied wherever the policy runs, evaluation included."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from mpirl.acting.envs import EnvSpec, is_image  # noqa: F401  (is_image: also here)
from mpirl.nets.acting import ActorCriticActing, gaussian_to_env, sample, sample_logp
from mpirl.nets.mlp import ActsInNumpy, mlp, parameter_layout, sequential, stack_names

_LOG_2PI = math.log(2 * math.pi)


class ObsStatistics(nn.Module):
    """Running mean and variance of observations, as parameters no optimizer touches (so they
    travel and are saved with the weights)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(shape), requires_grad=False)
        self.var = nn.Parameter(torch.ones(shape), requires_grad=False)


class ActorCritic(ActsInNumpy, nn.Module):
    """Separate policy and value MLPs over the flattened observation.

    ``obs_norm``: observations are normalized by running statistics (``normalizer``, set by the
    learners) and clipped to +-``clip_obs``. ``value_heads``: 1, or 2 for the values of the
    extrinsic and of the intrinsic return (RND, ``mpirl.algos.rnd``); ``forward`` then gives
    both as (batch, 2), and ``value`` the extrinsic one. ``squash``: Gaussian actions reach the
    env through tanh, scaled to the action bounds, instead of being clipped to them; either way
    log-probabilities are those of the unsquashed Gaussian sample.
    """

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "tanh",
                 obs_norm: bool = False, clip_obs: float = 10.0, log_std_init: float = 0.0,
                 squash: bool = False, value_heads: int = 1):
        super().__init__()
        self.spec = spec
        self.value_heads = value_heads
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        obs_dim = int(np.prod(spec.obs_shape))
        self._build(spec, obs_dim, hidden_sizes, act)
        if not spec.discrete:
            self.log_std = nn.Parameter(torch.full((spec.n_actions,), float(log_std_init)))
        self.squash = squash and not spec.discrete
        self.clip_obs = clip_obs
        self.obs_norm = obs_norm
        if obs_norm:  # the last submodule: trainable parameters form a prefix of the flat vector
            self.normalizer = ObsStatistics(tuple(spec.obs_shape))

    def _build(self, spec: EnvSpec, obs_dim: int, hidden_sizes: list[int], act) -> None:
        self.pi = mlp([obs_dim, *hidden_sizes, spec.n_actions], act, out_gain=0.01)
        self.vf = mlp([obs_dim, *hidden_sizes, self.value_heads], act, out_gain=1.0)

    def set_obs_stats(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Load running observation statistics (float64 arrays of the observation's shape)."""
        with torch.no_grad():
            self.normalizer.mean.copy_(torch.from_numpy(np.asarray(mean, dtype=np.float32)))
            self.normalizer.var.copy_(torch.from_numpy(np.asarray(var, dtype=np.float32)))

    def _input(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.obs_norm:
            stats = self.normalizer
            x = ((x - stats.mean) / torch.sqrt(stats.var + 1e-8)).clamp(-self.clip_obs,
                                                                         self.clip_obs)
        return x

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return self._input(obs).reshape(obs.shape[0], -1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy output (logits, or Gaussian means) and state values, for a batch: (batch,)
        with one value head, (batch, heads) with more."""
        x = self._flat(obs)
        return self._policy_out(x), self._values(sequential(self.vf, x))

    def _values(self, v: torch.Tensor) -> torch.Tensor:
        return v.squeeze(-1) if self.value_heads == 1 else v

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The (extrinsic) state value, (batch,)."""
        return sequential(self.vf, self._flat(obs))[:, 0]

    def log_prob_entropy(self, out: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of ``actions`` and the entropy, per sample."""
        if self.spec.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            return logp, entropy
        log_std = self.log_std.expand_as(out)
        z = (actions - out) / log_std.exp()
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
        entropy = (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)
        return logp, entropy

    def _policy_out(self, x: torch.Tensor) -> torch.Tensor:
        return sequential(self.pi, x)

    def _make_acting(self) -> ActorCriticActing:
        return ActorCriticActing(
            parameter_layout(self), self.spec, stack_names(self.pi, "pi"),
            stack_names(self.vf, "vf"), None if self.spec.discrete else "log_std",
            ("normalizer.mean", "normalizer.var") if self.obs_norm else None, self.clip_obs,
            self.squash)

    def _policy_np(self, obs: np.ndarray) -> np.ndarray:
        """The policy output for a few observations, in numpy: at an actor's handful of rows,
        torch's fixed cost per call would be most of the forward pass."""
        return self.acting().policy_out(obs)

    def _log_std_np(self) -> np.ndarray | None:
        return None if self.spec.discrete else self.log_std.detach().numpy()

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False
            ) -> np.ndarray:
        """Actions for a batch of observations: sampled with ``rng``, or the mode. Gaussian
        actions are unbounded samples: ``to_env`` maps them into the action bounds."""
        return sample(self._policy_np(obs), rng, deterministic, self._log_std_np())

    def act_logp(self, obs: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Sampled actions (the same draws as ``act``) and their log-probabilities under the
        policy: what a learner that trains on older rollouts needs of the behaviour policy."""
        return sample_logp(self._policy_np(obs), rng, self._log_std_np())

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """What the env receives for ``act``'s actions: Gaussian samples clipped (or squashed
        with tanh) into the action bounds; discrete actions as they are."""
        spec = self.spec
        if spec.discrete:
            return actions
        return gaussian_to_env(actions, spec.action_low, spec.action_high, self.squash)

    def predict_values(self, obs: np.ndarray) -> np.ndarray:
        """The (extrinsic) state values of a few observations, (batch,)."""
        acting = self.acting()
        if acting is not None:
            return acting.predict_values(obs)
        with torch.inference_mode():
            return self.value(torch.from_numpy(obs)).numpy()


class CNNActorCritic(ActorCritic):
    """Policy and value heads on one shared Nature CNN (Mnih et al. 2015: 32 8x8/4, 64 4x4/2,
    64 3x3/1 convolutions, 512 units) over stacked uint8 frames, scaled to [0, 1].

    ``precision`` (``cnn_features``): ``bf16`` runs the trunk under bfloat16 autocast (forward
    and backward), its 512 features return to float32, and the heads, the log-probabilities and
    every weight stay float32; ``auto`` does so only where the device computes bfloat16
    natively; ``fp32`` never."""

    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str = "tanh",
                 precision: str = "fp32", **kwargs):
        super().__init__(spec, hidden_sizes, activation, **kwargs)
        self.precision = precision

    def _build(self, spec: EnvSpec, obs_dim: int, hidden_sizes: list[int], act) -> None:
        self.trunk = nature_cnn(spec.obs_shape)
        self.pi = mlp([512, spec.n_actions], act, out_gain=0.01)
        self.vf = mlp([512, self.value_heads], act, out_gain=1.0)

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return cnn_features(self.trunk, self._input(obs), self.obs_norm, self.precision)

    def _policy_out(self, x: torch.Tensor) -> torch.Tensor:
        return self.pi(x)

    def _make_acting(self) -> None:
        return None  # convolutions act in torch

    @torch.inference_mode()
    def _policy_np(self, obs: np.ndarray) -> np.ndarray:
        return self._policy_out(self._flat(torch.from_numpy(obs))).numpy()


class ChannelsLastOnCPU(nn.Sequential):
    """A convolutional stack whose float32 training passes on CPU run in the channels-last
    memory layout: oneDNN's backward convolutions over (batch, height, width, channels) data
    are faster (the Nature CNN's forward and backward pass 1.1-1.3x on an AVX2 core, batches
    of 32 and 256), while its inference passes are 5-25% slower, so those (acting,
    evaluation, no-grad targets) keep the default layout, as does bfloat16 autocast. Only the
    activations change layout; the weights stay views into a flat vector, and the results are
    those of the default layout up to rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu")):
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def nature_cnn(obs_shape: tuple[int, ...]) -> nn.Sequential:
    """The Nature CNN trunk over (channels, height, width) frames: 512 ReLU features."""
    channels, height, width = obs_shape
    gain = math.sqrt(2)
    convs = [nn.Conv2d(channels, 32, 8, 4), nn.Conv2d(32, 64, 4, 2), nn.Conv2d(64, 64, 3, 1)]
    for conv in convs:
        nn.init.orthogonal_(conv.weight, gain=gain)
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        flat = nn.Sequential(*convs)(torch.zeros(1, channels, height, width)).numel()
    fc = nn.Linear(flat, 512)
    nn.init.orthogonal_(fc.weight, gain=gain)
    nn.init.zeros_(fc.bias)
    return ChannelsLastOnCPU(convs[0], nn.ReLU(), convs[1], nn.ReLU(), convs[2], nn.ReLU(),
                             nn.Flatten(), fc, nn.ReLU())


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` ('cpu', 'cuda') computes bfloat16 in hardware: a CPU with
    AVX512-BF16 or AMX, a CUDA GPU that supports it. Elsewhere bfloat16 is emulated, and a CNN
    update under bfloat16 autocast is many times slower than in float32 (14x on an AVX2 CPU)."""
    if device_type == "cuda":
        return _cuda_bf16()
    return device_type == "cpu" and _cpu_bf16()


def auto_bf16(device_type: str) -> bool:
    """Whether ``--precision auto`` computes the CNN trunk in bfloat16 on ``device_type``: on
    a CPU that computes it natively (``native_bf16``), where a CNN update takes less than half
    the time it takes in float32; not on a GPU, where cuDNN already runs float32 convolutions
    on tensor cores (TF32) and the autocast's casts cost more than they save: on an H200, the
    Nature CNN's updates on 256 to 896 frames took 1.0-1.4x as long under bfloat16 autocast
    as in float32."""
    return device_type == "cpu" and _cpu_bf16()


@functools.cache  # asked where a run sets --precision bf16
def _cuda_bf16() -> bool:
    if not torch.cuda.is_available():
        return False
    try:  # without emulation: a V100 runs bfloat16, but emulated and slowly
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation counted
        return torch.cuda.is_bf16_supported()


@functools.cache  # asked at every forward pass of --precision auto
def _cpu_bf16() -> bool:
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # not in older torch
    try:
        found = capabilities() if capabilities is not None else {}
    except RuntimeError:  # a CPU torch cannot describe
        found = {}
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


def cnn_features(trunk: nn.Module, x: torch.Tensor, normalized: bool, precision: str
                 ) -> torch.Tensor:
    """The CNN trunk's float32 features of frames ``x`` (scaled to [0, 1] unless
    ``normalized``), under bfloat16 autocast with ``precision`` bf16, or auto where that pays
    (``auto_bf16``)."""
    x = x if normalized else x * (1.0 / 255.0)
    if precision == "fp32" or (precision == "auto" and not auto_bf16(x.device.type)):
        return trunk(x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        features = trunk(x)
    return features.float()
