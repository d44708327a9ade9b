"""PPO on a synchronous learner: epochs of minibatch updates per iteration on the rollouts just
collected, with a flat optimizer (dozens of small steps per batch, a few in-place operations
each)."""
from __future__ import annotations

from mpirl.algos import rnd_learning
from mpirl.algos.normalization import merge_over
from mpirl.algos.onpolicy import OnPolicyTrainer
from mpirl.algos.optim import StepTogether
from mpirl.algos.ppo.update import PPO
from mpirl.algos.rnd_learning import RND
from mpirl.runtime import timing


class PPOTrainer(OnPolicyTrainer):
    stat_keys = PPO.STAT_KEYS

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = ctx.cfg
        # the approximate KL rides in the gradient allreduce: every learner sees its mean; RND's
        # predictor (--intrinsic rnd) trains in the same allreduce
        self.rnd, self.averager, self._optimizers = rnd_learning.learner_parts(
            ctx, extras=("approx_kl",))
        self.optimizer = self._optimizers[0]
        steps = self.optimizer if self.rnd is None else StepTogether(self._optimizers)
        self.algo = PPO(cfg, ctx.policy, self.averager, steps,
                        ctx.steps_per_iteration // cfg.batch_size,
                        merge=self._merge, autograd=cfg.autograd,
                        intrinsic=self.rnd)
        self.stat_keys = self.algo.STAT_KEYS
        self.rng = ctx.rng("minibatches")
        self.clip = cfg.clip_range

    def _merge(self, moments):
        """The advantages' moments over the global batch; with --sync average, where each
        learner steps on its own batch, over its own."""
        if self.cfg.sync == "average":
            return moments
        return merge_over(self.ctx.comm, [moments])[0]

    def optimizers(self) -> list:
        return self._optimizers

    def ingest(self, messages) -> None:
        super().ingest(messages)
        if self.rnd is not None:
            self.rnd.take_in(messages)

    def train(self, progress: float) -> list[dict]:
        cfg = self.cfg
        timing.switch("other")
        self.norm.prepare(self.batch)
        if self.rnd is not None:
            timing.switch("inference")
            self.rnd.prepare(self.batch)
        self.clip = cfg.clip_range * (1.0 - progress if cfg.clip_schedule == "linear" else 1.0)
        if self.ctx.batch_share is not None and self.averager.average_every is None:
            # rollouts cut short: this learner's part of the global batch varies
            self.averager.share = self.ctx.batch_share
        timing.switch("gradient")
        stats = self.algo.update(self.batch, self.clip, self.rng)
        self.updates += sum(not s["skipped"] for s in stats)
        self.norm.publish()
        return stats

    @property
    def columns(self) -> tuple[str, ...]:
        return ("clip_range", "kl_stops", *super().columns,
                *(RND.COLUMNS if self.rnd is not None else ()))

    def row(self, seconds: float) -> dict:
        row = {**super().row(seconds), "updates": self.updates, "clip_range": self.clip,
               "kl_stops": self.algo.kl_stops}
        if self.rnd is not None:
            row.update(self.rnd.row())
        return row

    def summary(self) -> dict:
        return {"updates": self.updates, "kl_stops": self.algo.kl_stops,
                "minibatches": self.algo.minibatches}

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "optimizer": self.optimizer.state_dict(),
                 "updates": self.updates, "kl_stops": self.algo.kl_stops}
        if self.rnd is not None:
            state["rnd"] = self.rnd.state_dict()
        return state

    def own_state_dict(self) -> dict:
        state = {**super().own_state_dict(), "rng": self.rng.bit_generator.state}
        if self.rnd is not None:
            state["rnd"] = self.rnd.own_state_dict()
        return state

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        super().load_state_dict(shared, own)
        if shared:
            self.optimizer.load_state_dict(shared["optimizer"])
            self.updates, self.algo.kl_stops = shared["updates"], shared["kl_stops"]
        if own:
            self.rng.bit_generator.state = own["rng"]
        if self.rnd is not None:
            self.rnd.load_state_dict((shared or {}).get("rnd"), (own or {}).get("rnd"))
