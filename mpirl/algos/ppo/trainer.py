"""PPO on a synchronous learner: epochs of minibatch updates per iteration on the rollouts just
collected, with a flat optimizer (dozens of small steps per batch, a few in-place operations
each)."""
from __future__ import annotations

from mpirl.algos.normalization import merge_over
from mpirl.algos.onpolicy import OnPolicyTrainer
from mpirl.algos.optim import flat_optimizer
from mpirl.algos.ppo.update import PPO
from mpirl.runtime import timing


class PPOTrainer(OnPolicyTrainer):
    stat_keys = PPO.STAT_KEYS

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = ctx.cfg
        # the approximate KL rides in the gradient allreduce: every learner sees its mean
        self.averager = ctx.averager(ctx.policy.parameters(), extras=("approx_kl",))
        self.optimizer = flat_optimizer(cfg, ctx.policy_params, self.averager)
        self.algo = PPO(cfg, ctx.policy, self.averager, self.optimizer,
                        ctx.steps_per_iteration // cfg.batch_size,
                        merge=lambda m: merge_over(ctx.comm, [m])[0], autograd=cfg.autograd)
        self.rng = ctx.rng("minibatches")
        self.clip = cfg.clip_range

    def optimizers(self) -> list:
        return [self.optimizer]

    def train(self, progress: float) -> list[dict]:
        cfg = self.cfg
        timing.switch("other")
        self.norm.prepare(self.batch)
        self.clip = cfg.clip_range * (1.0 - progress if cfg.clip_schedule == "linear" else 1.0)
        timing.switch("gradient")
        stats = self.algo.update(self.batch, self.clip, self.rng)
        self.updates += sum(not s["skipped"] for s in stats)
        self.norm.publish()
        return stats

    @property
    def columns(self) -> tuple[str, ...]:
        return ("clip_range", "kl_stops", *super().columns)

    def row(self, seconds: float) -> dict:
        return {**super().row(seconds), "updates": self.updates, "clip_range": self.clip,
                "kl_stops": self.algo.kl_stops}

    def summary(self) -> dict:
        return {"updates": self.updates, "kl_stops": self.algo.kl_stops,
                "minibatches": self.algo.minibatches}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates, "kl_stops": self.algo.kl_stops}

    def own_state_dict(self) -> dict:
        return {**super().own_state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])
            self.updates, self.algo.kl_stops = shared["updates"], shared["kl_stops"]
        if own:
            self.rng.bit_generator.state = own["rng"]
