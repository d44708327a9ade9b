"""What the synchronous actor-critic learners (A2C, PPO) share: the rollouts of all their
acting ranks side by side, and observation and reward normalization kept identical on every
learner (``mpirl.algos.normalization``). Rollouts cut short (--straggler-cutoff) bring
``lengths``: env column j holds its first ``lengths[j]`` steps."""
from __future__ import annotations

import numpy as np
import torch

from mpirl.acting.messages import ON_POLICY_KEYS, PackedArrays
from mpirl.algos.api import LearnerContext, Trainer
from mpirl.algos.normalization import RolloutNormalization
from mpirl.nets.acting import is_recurrent
from mpirl.runtime import timing

# what a rollout of a recurrent policy adds: the core's state at its start, and where it was
# zeroed (``mpirl.algos.actor_critic.recurrent_fields``)
RECURRENT_KEYS = ("state", "resets")


def rollout_keys(message: PackedArrays, keys: tuple[str, ...] = ON_POLICY_KEYS
                 ) -> tuple[str, ...]:
    """``keys``, and the recurrent state's fields where the message has them."""
    return keys + tuple(k for k in RECURRENT_KEYS if k in message.views)


def rollout_outputs(model, obs: torch.Tensor, batch: dict[str, np.ndarray]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy outputs and values of a rollout's observations ``obs`` (T+1, N, ...), flat in
    (step, env) order: a recurrent policy runs its core over the rollout from the state it
    started with, zeroed where the actor zeroed it."""
    if is_recurrent(model):
        def tensor(key: str) -> torch.Tensor:
            return torch.from_numpy(batch[key]).to(obs.device)
        return model.unroll(obs, tensor("state"), tensor("resets"))
    return model(obs.reshape((-1,) + tuple(obs.shape[2:])))


class OnPolicyTrainer(Trainer):
    """Ingests rollouts into ``batch`` (obs (T+1, N, ...), actions, rewards, dones and bootstrap
    (T, N), the acting ranks' envs side by side along N) and holds their normalization."""

    def __init__(self, ctx: LearnerContext):
        super().__init__(ctx)
        self.cfg = ctx.cfg
        self.batch: dict[str, np.ndarray] = {}
        self.norm = RolloutNormalization(ctx.cfg, ctx.policy, ctx.comm, ctx.streams)

    def ingest(self, messages: list[PackedArrays]) -> None:
        for key in rollout_keys(messages[0]):
            parts = [m[key] for m in messages]
            self.batch[key] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        self.batch.pop("lengths", None)
        if "length" in messages[0].views:  # rollouts that may have been cut short
            T = messages[0]["rewards"].shape[0]
            lengths = np.concatenate([np.full(m["rewards"].shape[1], int(m["length"][0]))
                                      for m in messages])
            if (lengths < T).any():
                self.batch["lengths"] = lengths

    @property
    def columns(self) -> tuple[str, ...]:
        return ("reward_scale",) if self.norm.ret is not None else ()

    def row(self, seconds: float) -> dict:
        return {"reward_scale": self.norm.reward_scale()} if self.norm.ret is not None else {}

    def state_dict(self) -> dict:
        return {"normalization": self.norm.shared_state()}

    def own_state_dict(self) -> dict:
        return {"normalization": self.norm.own_state()}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        self.norm.load((shared or {}).get("normalization"), (own or {}).get("normalization"))


class OneUpdateTrainer(OnPolicyTrainer):
    """One averaged update per iteration by ``algo`` (an object with ``update(batch)``) with
    ``optimizer`` and ``averager``, which the subclass builds (A2C, IMPALA)."""

    algo = None
    optimizer = None
    averager = None

    def optimizers(self) -> list:
        return [self.optimizer]

    def train(self, progress: float) -> list[dict]:
        timing.switch("other")
        self.norm.prepare(self.batch)
        if self.ctx.batch_share is not None and self.averager.average_every is None:
            # rollouts cut short: this learner's part of the global batch varies
            self.averager.share = self.ctx.batch_share
        timing.switch("gradient")
        stats = self.algo.update(self.batch)
        self.updates += not stats["skipped"]
        self.norm.publish()
        return [stats]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])
            self.updates = shared.get("updates", 0)
