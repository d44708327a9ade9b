"""Exploration by random network distillation (Burda et al. 2018, arXiv:1810.12894) for PPO and
IMPALA: ``--intrinsic rnd``.

The intrinsic reward of a step is the predictor's error on its next observation
(``mpirl.nets.rnd``), which stays high where the agent has rarely been. On the learners, each
iteration:

1. RND's observation statistics take in the batch's next observations (and, in the first
   iteration, those of ``--rnd-init-steps`` random-action steps each actor took before its
   first rollout), merged over the learners in rank order as the on-policy observation
   statistics are (``mpirl.algos.normalization``): equal on every learner, and equal to those
   of one process that saw all the data;
2. the intrinsic rewards are the predictor's errors on the next observations (normalized by
   those statistics, clipped to +-5);
3. they are divided by the std of the discounted intrinsic return of each env stream, a
   return that runs on across episode ends (intrinsic rewards are non-episodic), its
   statistics merged the same way (and weighed down by ``--int-return-decay`` each
   iteration).

The policy carries two value heads, extrinsic and intrinsic, with their own discounts
(``--gamma`` and ``--int-gamma``); the update combines the two advantages as ``--ext-coef``
x extrinsic + ``--int-coef`` x intrinsic, and trains the predictor on ``--rnd-update-proportion``
of each minibatch, its gradient in the same allreduce as the policy's (``learner_parts``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mpirl.acting.envs import EnvSpec
from mpirl.acting.messages import Fields, PackedArrays
from mpirl.algos.moments import Moments
from mpirl.algos.normalization import merge_over
from mpirl.algos.optim import flat_optimizer
from mpirl.algos.returns import running_returns
from mpirl.config.fields import option
from mpirl.nets.actor_critic import is_image
from mpirl.nets.rnd import RNDNetworks, rnd_input, rnd_input_shape
from mpirl.runtime import rng as streams_
from mpirl.runtime import timing

OBS_CLIP = 5.0
INIT_FIELD = "rnd_init"  # the moments of an actor's random-action steps, in its messages
SOURCE_FIELD = "rnd_source"  # which acting rank sent a message: its env streams' returns


@dataclass
class IntrinsicOptions:
    """intrinsic rewards (RND)"""

    intrinsic: str = option(
        "none", "Intrinsic rewards: rnd = random network distillation (a second value head; "
        "--gamma stays the extrinsic discount, for which the RND papers use 0.999 on sparse "
        "game scores).", choices=("none", "rnd"))
    int_gamma: float = option(0.99, "RND: discount of the intrinsic return (non-episodic).",
                              bounds="[0, 1]")
    ext_coef: float = option(2.0, "RND: weight of the extrinsic advantages.",
                             bounds="[0, inf)")
    int_coef: float = option(1.0, "RND: weight of the intrinsic advantages.",
                             bounds="[0, inf)")
    rnd_update_proportion: float = option(
        0.25, "RND: share of each minibatch the predictor trains on.", bounds="(0, 1]")
    int_return_decay: float = option(
        1.0, "RND: each iteration, the intrinsic-return statistics gathered before it weigh "
        "this much less. 1 = all history alike (Burda et al.); lower follows intrinsic rewards "
        "that fall by orders of magnitude as the predictor learns (small observations), which "
        "all-history statistics would keep scaling down to nothing.", bounds="[0, 1]")
    rnd_init_steps: int = option(
        128, "RND: random-action steps per env, before the first rollout, whose observations "
        "start RND's normalization statistics (not counted in --total-steps).",
        bounds="[0, inf)")


def active(cfg) -> bool:
    return getattr(cfg, "intrinsic", "none") == "rnd"


# ---------------------------------------------------------------------- acting
def message_fields(cfg, env: EnvSpec) -> Fields:
    """The fields RND adds to a rollout message: the moments of the observations of the
    actor's random-action steps (in its first message; empty, count 0, after), and the
    sender's acting-rank number."""
    if not active(cfg):
        return {}
    size = Moments(rnd_input_shape(env)).size()
    return {INIT_FIELD: ((size,), np.dtype(np.float64)),
            SOURCE_FIELD: ((1,), np.dtype(np.int64))}


class RandomStartCollector:
    """A rollout collector whose first ``collect`` is preceded by ``steps`` random-action
    steps of every env, their observations' moments sent in ``rnd_init``. Episodes of those
    steps are not reported; the envs go on from where the random steps left them. Every
    message names its sender (``index``, the acting rank's number) in ``rnd_source``."""

    def __init__(self, inner, spec: EnvSpec, steps: int, rng: np.random.Generator,
                 index: int = 0):
        self.inner, self.spec, self.steps, self.rng = inner, spec, steps, rng
        self.index = index
        self.envs = inner.envs
        self.started = steps == 0

    def _random_actions(self) -> np.ndarray:
        spec, n = self.spec, self.envs.n
        if spec.discrete:
            return self.rng.integers(0, spec.n_actions, size=n)
        return self.rng.uniform(spec.action_low, spec.action_high,
                                size=(n, *spec.action_shape)).astype(np.float32)

    def _random_steps(self) -> Moments:
        shape = rnd_input_shape(self.spec)
        seen = Moments(shape)
        for _ in range(self.steps):
            self.envs.step(self._random_actions())
            seen.merge(Moments.of(rnd_input(self.spec, self.envs.obs), shape))
        self.envs.pop_episodes()
        return seen

    def collect(self, out: PackedArrays, progress: float = 0.0) -> None:
        init = Moments(rnd_input_shape(self.spec))
        if not self.started:
            timing.switch("env")
            init = self._random_steps()
            self.started = True
        out[INIT_FIELD][:] = init.pack()
        out[SOURCE_FIELD][0] = self.index
        self.inner.collect(out, progress)

    def state_dict(self) -> dict:
        return {**self.inner.state_dict(), "rnd_started": self.started}

    def load_state_dict(self, state: dict, epoch: int) -> int:
        self.started = state.get("rnd_started", True)
        return self.inner.load_state_dict(state, epoch)


def startup(setup) -> list[str]:
    """The start-up line that describes RND, when it is on."""
    cfg = setup.cfg
    if not active(cfg):
        return []
    nets = RNDNetworks(setup.spec)
    count = [sum(p.numel() for p in part.parameters()) for part in (nets.predictor, nets.target)]
    shape = "x".join(str(d) for d in rnd_input_shape(setup.spec))
    what = "the newest frame" if is_image(setup.spec) else "the observation"
    return [f"mpirl: intrinsic rewards: RND on {what} ({shape}), predictor {count[0]:,} "
            f"parameters trained on {cfg.rnd_update_proportion:g} of each minibatch, fixed "
            f"target {count[1]:,}; ext/int discounts {cfg.gamma:g}/{cfg.int_gamma:g}, "
            f"advantage weights {cfg.ext_coef:g}/{cfg.int_coef:g}; statistics start from "
            f"{cfg.rnd_init_steps:,} random steps per env (not counted in the budget)"]


def collector(ctx, inner):
    """``inner`` (a rollout collector), preceded by RND's random-action steps when RND is on."""
    if not active(ctx.cfg):
        return inner
    return RandomStartCollector(inner, ctx.env, ctx.cfg.rnd_init_steps, ctx.rng, ctx.index)


# ---------------------------------------------------------------------- learning
class RND:
    """A learner's RND: the networks (identical on every learner: built from the run's seed),
    the statistics, and the intrinsic rewards of a batch.

    ``take_in(messages)`` at ingest (in the order the batch's columns follow), ``prepare(batch)``
    before the update: it adds ``int_rewards`` (T, N) to the batch and keeps the normalized
    next observations, on which ``loss(part)`` trains the predictor during the update.
    The running intrinsic return of each env stream is kept per sender (``rnd_source``), so a
    batch may hold any acting ranks' messages, several from one, in the order they were sent.
    ``optimizer`` (the predictor's) and ``rng`` (which samples it trains on) are the
    learner's, checkpointed with the rest."""

    STAT_KEYS = ("rnd_loss",)
    COLUMNS = ("intrinsic_reward", "intrinsic_return_std")

    def __init__(self, cfg, spec: EnvSpec, device: torch.device, comm,
                 rng: np.random.Generator | None = None):
        self.cfg, self.spec, self.comm, self.device = cfg, spec, comm, device
        with torch.random.fork_rng(devices=[]):  # the same weights on every learner
            torch.manual_seed(streams_.env_seed(cfg.seed, 0, 0, stream="rnd networks"))
            self.nets = RNDNetworks(spec)
        self.nets.to(device)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.optimizer = None
        self.shape = rnd_input_shape(spec)
        self.obs = Moments(self.shape)
        self.ret = Moments(())
        self.returns: dict[int, np.ndarray] = {}  # running intrinsic returns, per sender
        self.blocks: list[tuple[int, int]] = []  # (sender, env streams) of the batch's columns
        self.pending = Moments(self.shape)  # random-step moments taken in, not yet merged
        self.inputs: torch.Tensor | None = None  # the batch's normalized next observations
        self.reward_sum, self.reward_count = 0.0, 0

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.nets.predictor.parameters())

    def take_in(self, messages: list[PackedArrays]) -> None:
        self.blocks = [(int(m[SOURCE_FIELD][0]), m["rewards"].shape[1]) for m in messages]
        for m in messages:
            self.pending.merge(Moments.unpack(m[INIT_FIELD], self.shape))

    def _normalize(self, x: np.ndarray) -> torch.Tensor:
        mean = self.obs.mean.astype(np.float32)
        std = np.sqrt(self.obs.var + 1e-8).astype(np.float32)
        out = np.clip((x.astype(np.float32) - mean) / std, -OBS_CLIP, OBS_CLIP)
        return torch.from_numpy(out).to(self.device)

    def _returns(self, raw: np.ndarray) -> np.ndarray:
        """The running intrinsic returns of ``raw`` (T, N), sender by sender in order."""
        out, start = np.empty(raw.shape, dtype=np.float64), 0
        for source, n in self.blocks:
            carry = self.returns.get(source)
            if carry is None or len(carry) != n:
                carry = np.zeros(n, dtype=np.float64)
            out[:, start:start + n], self.returns[source] = running_returns(
                carry, raw[:, start:start + n], self.cfg.int_gamma)
            start += n
        assert start == raw.shape[1], "take_in() names the senders of every column"
        return out

    def prepare(self, batch: dict[str, np.ndarray]) -> None:
        T, N = batch["rewards"].shape
        next_obs = batch["obs"][1:].reshape(T * N, *batch["obs"].shape[2:])
        x = rnd_input(self.spec, next_obs)
        seen = Moments.of(x, self.shape).merge(self.pending)
        self.pending = Moments(self.shape)
        self.obs.merge(merge_over(self.comm, [seen])[0])
        self.inputs = self._normalize(x)
        with torch.no_grad():
            raw = self.nets.error(self.inputs).cpu().numpy().astype(np.float64).reshape(T, N)
        ret, rew = merge_over(self.comm, [Moments.of(self._returns(raw)), Moments.of(raw)])
        self.ret.decay_(self.cfg.int_return_decay).merge(ret)
        self.reward_sum += float(rew.mean) * rew.count
        self.reward_count += int(rew.count)
        batch["int_rewards"] = (raw / np.sqrt(self.ret.var + 1e-8)).astype(np.float32)

    def loss(self, part=slice(None)) -> torch.Tensor:
        """The predictor's error on a random ``--rnd-update-proportion`` of the samples
        ``part`` of the batch (indices, or a slice)."""
        x = self.inputs[part]
        error = self.nets.error(x)
        keep = torch.from_numpy(self.rng.random(error.shape[0])
                                < self.cfg.rnd_update_proportion)
        keep = keep.to(error.device, error.dtype)
        return (error * keep).sum() / keep.sum().clamp(min=1.0)

    def row(self) -> dict:
        """Mean intrinsic reward (before scaling) since the last row, over all learners, and
        the std it is divided by."""
        mean = self.reward_sum / self.reward_count if self.reward_count else float("nan")
        self.reward_sum, self.reward_count = 0.0, 0
        return {"intrinsic_reward": mean,
                "intrinsic_return_std": float(np.sqrt(self.ret.var + 1e-8))}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = {"networks": {k: v.detach().cpu().clone()
                              for k, v in self.nets.state_dict().items()},
                 "obs": self.obs.state_dict(), "ret": self.ret.state_dict(),
                 "pending": self.pending.state_dict(),
                 "reward_sum": self.reward_sum, "reward_count": self.reward_count}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def own_state_dict(self) -> dict:
        return {"returns": {k: v.copy() for k, v in self.returns.items()},
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        if shared:
            with torch.no_grad():
                for k, v in self.nets.state_dict().items():
                    v.copy_(shared["networks"][k])
            self.obs.load_state_dict(shared["obs"])
            self.ret.load_state_dict(shared["ret"])
            self.pending.load_state_dict(shared["pending"])
            self.reward_sum = shared["reward_sum"]
            self.reward_count = shared["reward_count"]
            if self.optimizer is not None and "optimizer" in shared:
                self.optimizer.load_state_dict(shared["optimizer"])
        if own:  # (none after a re-layout: the returns start anew)
            self.returns = {int(k): np.array(v) for k, v in own["returns"].items()}
            self.rng.bit_generator.state = own["rng"]


def learner_parts(ctx, extras=()):
    """What a learner of the policy (and of RND's predictor with --intrinsic rnd) trains with:
    (the RND or None, one ``GradientAverager`` over the policy and the predictor with the
    ``extras`` slots, the optimizers: the policy's flat one first, then the predictor's)."""
    cfg = ctx.cfg
    policy = list(ctx.policy.parameters())
    trained = sum(p.numel() for p in policy if p.requires_grad)
    intrinsic = RND(cfg, ctx.env, ctx.device, ctx.comm, ctx.rng("rnd")) if active(cfg) \
        else None
    params = policy
    if intrinsic is not None:
        from mpirl.comm import FlatParameters  # a learner's: MPI is there
        predictor = FlatParameters(intrinsic.nets.predictor)
        params = policy + intrinsic.parameters()
    averager = ctx.averager(params, extras=extras)
    optimizers = [flat_optimizer(cfg, ctx.policy_params, averager, (0, trained))]
    if intrinsic is not None:
        intrinsic.optimizer = flat_optimizer(cfg, predictor, averager,
                                             (trained, averager.numel))
        optimizers.append(intrinsic.optimizer)
    return intrinsic, averager, optimizers
