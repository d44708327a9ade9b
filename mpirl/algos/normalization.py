"""Observation normalization and return-based reward scaling for on-policy learners, with the
statistics kept identical on every learner.

Each iteration every learner takes the moments of its own batch (raw observations; the
discounted returns of its env streams), the learners gather each other's, and every learner
merges them in rank order into its running moments: the same float operations everywhere, so
the statistics are bit-identical across learners and equal (to rounding) those of one process
that saw all the data. The observation statistics then go into the model's normalizer, which
travels to the actors with the weights and is saved with the policy.
"""
from __future__ import annotations

import numpy as np

from mpirl.algos.moments import Moments
from mpirl.algos.returns import running_returns

REWARD_CLIP = 10.0


def merge_over(comm_, local: list[Moments]) -> list[Moments]:
    """The moments of every rank of ``comm_`` (None: this process alone) merged, for each entry
    of ``local``, in rank order."""
    if comm_ is None or comm_.Get_size() == 1:
        return [Moments(m.shape).merge(m) for m in local]
    from mpirl import comm  # MPI only where there is a communicator
    packed = np.concatenate([m.pack() for m in local])
    parts = comm.allgather_(comm_, packed, what="the other learners at a statistics merge")
    out = [Moments(m.shape) for m in local]
    for row in parts:
        offset = 0
        for total, m in zip(out, local):
            n = m.size()
            total.merge(Moments.unpack(row[offset:offset + n], m.shape))
            offset += n
    return out


class RolloutNormalization:
    """``prepare(batch)`` before an update: merges this iteration's statistics and scales the
    batch's rewards in place. ``publish()`` after it: puts the observation statistics into the
    model, for the next rollouts. ``streams``: this learner's env columns in a batch."""

    def __init__(self, cfg, model, learners_comm, streams: int):
        self.model, self.comm, self.gamma = model, learners_comm, cfg.gamma
        self.obs = Moments(tuple(model.spec.obs_shape)) if cfg.normalize_obs else None
        self.ret = Moments(()) if cfg.normalize_reward else None
        self.returns = np.zeros(streams, dtype=np.float64)  # running discounted returns

    @property
    def active(self) -> bool:
        return self.obs is not None or self.ret is not None

    def _discounted_returns(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        out, self.returns = running_returns(self.returns, rewards, self.gamma, dones)
        return out

    def prepare(self, batch: dict[str, np.ndarray]) -> None:
        if not self.active:
            return
        T = batch["rewards"].shape[0]
        lengths = batch.get("lengths")
        valid = None if lengths is None else np.arange(T)[:, None] < lengths[None, :]
        local = []
        if self.obs is not None:
            obs = batch["obs"][:T] if valid is None else batch["obs"][:T][valid]
            local.append(Moments.of(obs, self.obs.shape))
        if self.ret is not None:
            if valid is None:
                returns = self._discounted_returns(batch["rewards"], batch["dones"])
            else:  # each stream's returns run over its own steps only
                returns = np.empty(batch["rewards"].shape)
                for t in range(T):
                    step = valid[t]
                    returns[t] = self.returns * self.gamma + batch["rewards"][t]
                    self.returns = np.where(step, np.where(batch["dones"][t] > 0, 0.0,
                                                           returns[t]), self.returns)
                returns = returns[valid]
            local.append(Moments.of(returns))
        merged = merge_over(self.comm, local)
        if self.obs is not None:
            self.obs.merge(merged.pop(0))
        if self.ret is not None:
            self.ret.merge(merged.pop(0))
            scale = 1.0 / np.sqrt(self.ret.var + 1e-8)
            batch["rewards"][:] = np.clip(batch["rewards"] * scale, -REWARD_CLIP, REWARD_CLIP)

    def publish(self) -> None:
        if self.obs is not None:
            self.model.set_obs_stats(self.obs.mean, self.obs.var)

    def reward_scale(self) -> float:
        return float(1.0 / np.sqrt(self.ret.var + 1e-8)) if self.ret is not None else 1.0

    # ------------------------------------------------------------------ checkpoints
    def shared_state(self) -> dict:
        return {"obs": self.obs.state_dict() if self.obs is not None else None,
                "ret": self.ret.state_dict() if self.ret is not None else None}

    def own_state(self) -> dict:
        return {"returns": self.returns.copy()}

    def load(self, shared: dict | None, own: dict | None) -> None:
        if shared:
            if self.obs is not None and shared.get("obs"):
                self.obs.load_state_dict(shared["obs"])
            if self.ret is not None and shared.get("ret"):
                self.ret.load_state_dict(shared["ret"])
        if own and len(own["returns"]) == len(self.returns):
            self.returns[:] = own["returns"]
