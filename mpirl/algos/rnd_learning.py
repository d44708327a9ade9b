"""Random network distillation on the learners (``mpirl.algos.rnd`` describes the method):
the networks, the statistics and the intrinsic rewards of a batch, and the predictor's
optimizer beside the policy's."""
from __future__ import annotations

import numpy as np
import torch

from mpirl.acting.envs import EnvSpec
from mpirl.acting.messages import PackedArrays
from mpirl.algos.moments import Moments
from mpirl.algos.normalization import merge_over
from mpirl.algos.optim import flat_optimizer
from mpirl.algos.returns import running_returns
from mpirl.algos.rnd import INIT_FIELD, OBS_CLIP, SOURCE_FIELD, active, rnd_input, rnd_input_shape
from mpirl.nets.rnd import RNDNetworks
from mpirl.runtime import rng as streams_


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
