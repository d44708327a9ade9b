"""What a learner does with the data of one iteration, per algorithm family.

The learner loop (``mpirl.execution.sync.learner``) owns communication, counters, evaluation, logging
and checkpoints; a trainer fills in the algorithm: how incoming messages become training data
(``ingest``), how many averaged updates an iteration makes (``train``), what it adds to the log
row and to checkpoints.

``train`` gets this learner's control values (stop request, checkpoint due) and returns their
sums over all learners: they ride in the extra slots of every gradient allreduce, and when an
iteration makes no update, in one small allreduce of their own, so every learner takes the
same branch afterwards.
"""
from __future__ import annotations

import numpy as np
import torch

from mpirl import comm
from mpirl.runtime import timing
from mpirl.algos import A2C, DQN, PPO
from mpirl.algos.mlp_backprop import FlatAdam
from mpirl.algos.normalization import RolloutNormalization, merge_over
from mpirl.acting.messages import ON_POLICY_KEYS, PackedArrays

_REPLAY_STREAM = 3
_MINIBATCH_STREAM = 4


def make_optimizer(cfg, params, fused: bool = False) -> torch.optim.Optimizer:
    """``fused`` takes one flat parameter: the step is then one kernel, which matters when a
    learner makes hundreds of small updates a second (DQN)."""
    kind = {"fused": True} if fused else {"foreach": True}
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5, **kind)
    return torch.optim.Adam(params, lr=cfg.lr, eps=1e-5, **kind)


class OnPolicyTrainer:
    """A2C: one update per iteration on the rollouts just collected with the current weights,
    with observation and reward normalization when configured."""

    pipelined = False  # actors must act with the newest weights
    flat_optimizer = False
    extra_slots = 0  # control slots of the gradient allreduce beyond the learner's two
    stat_keys = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")

    @staticmethod
    def batch_share(setup, rank: int) -> float:
        """This learner's fraction of the global batch: its share of the acting ranks."""
        return setup.layout.acting_ranks_of(rank) / setup.acting_ranks

    def __init__(self, learner):
        self.cfg = learner.cfg
        self.averager = learner.averager
        self.comm = learner.comms.learners
        self.algo = A2C(learner.cfg, learner.model, learner.averager, learner.optimizer)
        self._batch: dict[str, np.ndarray] = {}
        streams = learner.setup.layout.acting_ranks_of(learner.comms.rank) * \
            learner.cfg.envs_per_actor
        self.norm = RolloutNormalization(learner.cfg, learner.model, self.comm, streams)

    def ingest(self, rollouts: list[PackedArrays]) -> None:
        """The rollouts of all this learner's actors side by side along the env axis."""
        for key in ON_POLICY_KEYS:
            parts = [r[key] for r in rollouts]
            self._batch[key] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def weights_due(self) -> bool:
        return True

    def train(self, control: list[float], progress: float, between=None
              ) -> tuple[list[dict], list[float]]:
        timing.switch("other")
        self.norm.prepare(self._batch)
        self.averager.extras[:] = torch.tensor(control)
        timing.switch("gradient")
        stats = self.algo.update(self._batch)
        self.norm.publish()
        return [stats], self.averager.extras.tolist()

    @property
    def extra_columns(self) -> list[str]:
        """progress.csv columns this trainer adds to the standard ones."""
        return ["reward_scale"] if self.norm.ret is not None else []

    def row(self, seconds: float) -> dict:
        if self.norm.ret is not None:
            return {"reward_scale": self.norm.reward_scale()}
        return {}

    def summary(self) -> dict:
        return {}

    def shared_state(self) -> dict:
        return {"normalization": self.norm.shared_state()}

    def own_state(self, with_replay: bool) -> dict:
        return {"normalization": self.norm.own_state()}

    def load(self, shared: dict, own: dict | None) -> None:
        self.norm.load((shared or {}).get("normalization"), (own or {}).get("normalization"))


class PPOTrainer(OnPolicyTrainer):
    """PPO: epochs of minibatch updates per iteration on the rollouts just collected."""

    extra_slots = 1  # the approximate KL, averaged over the learners with the gradients
    flat_optimizer = True  # dozens of small updates per batch: a few in-place operations each
    stat_keys = PPO.STAT_KEYS

    @staticmethod
    def flat_optimizer_for(cfg, flat: torch.nn.Parameter):
        if cfg.optimizer == "adam":
            return FlatAdam(flat, cfg.lr)
        return make_optimizer(cfg, [flat], fused=True)

    def __init__(self, learner):
        super().__init__(learner)
        cfg, setup = self.cfg, learner.setup
        self.algo = PPO(cfg, learner.model, learner.averager, learner.optimizer,
                        setup.minibatches, merge=lambda m: merge_over(self.comm, [m])[0])
        key = [cfg.seed, _MINIBATCH_STREAM, learner.comms.rank] + \
            ([learner.epoch] if learner.epoch else [])
        self.rng = np.random.default_rng(np.random.SeedSequence(key))
        self.clip = cfg.clip_range
        self.updates = 0

    def train(self, control: list[float], progress: float, between=None
              ) -> tuple[list[dict], list[float]]:
        cfg = self.cfg
        timing.switch("other")
        self.norm.prepare(self._batch)
        self.clip = cfg.clip_range * (1.0 - progress if cfg.clip_schedule == "linear" else 1.0)
        timing.switch("gradient")
        stats, sums = self.algo.update(self._batch, self.clip, control, self.rng)
        self.updates += sum(not s["skipped"] for s in stats)
        self.norm.publish()
        return stats, sums

    @property
    def extra_columns(self) -> list[str]:
        return ["approx_kl", "clip_fraction", "clip_range", "kl_stops", *super().extra_columns]

    def row(self, seconds: float) -> dict:
        return {**super().row(seconds), "updates": self.updates, "clip_range": self.clip,
                "kl_stops": self.algo.kl_stops}

    def summary(self) -> dict:
        return {"updates": self.updates, "kl_stops": self.algo.kl_stops,
                "minibatches": self.algo.minibatches}

    def shared_state(self) -> dict:
        return {**super().shared_state(), "updates": self.updates,
                "kl_stops": self.algo.kl_stops}

    def own_state(self, with_replay: bool) -> dict:
        return {**super().own_state(with_replay), "rng": self.rng.bit_generator.state}

    def load(self, shared: dict, own: dict | None) -> None:
        super().load(shared, own)
        if shared:
            self.updates, self.algo.kl_stops = shared["updates"], shared["kl_stops"]
        if own:
            self.rng.bit_generator.state = own["rng"]


class ReplayTrainer:
    """DQN: chunks go into this learner's replay shard; each iteration makes as many averaged
    updates as keep ``--replay-ratio`` (samples trained per env step), whatever the actor count.

    The number of updates is a function of the counters alone (a fractional carry keeps the
    long-run ratio exact), so every learner makes the same number and the allreduces line up.
    """

    pipelined = True  # actors collect the next chunk while the learners train on this one
    flat_optimizer = True  # hundreds of small updates a second: one fused optimizer kernel
    extra_slots = 0

    @staticmethod
    def flat_optimizer_for(cfg, flat: torch.nn.Parameter) -> torch.optim.Optimizer:
        return make_optimizer(cfg, [flat], fused=True)
    stat_keys = DQN.STAT_KEYS

    @staticmethod
    def batch_share(setup, rank: int) -> float:
        """This learner's part of the global minibatch."""
        return setup.batch_of(rank) / setup.cfg.batch_size

    def __init__(self, learner):
        cfg = self.cfg = learner.cfg
        setup, rank = learner.setup, learner.comms.rank
        self.setup = setup
        self.averager = learner.averager
        self.learners = setup.layout.learners
        self.comm = learner.comms.learners
        self.replay = setup.make_replay(rank)
        self.batch = setup.batch_of(rank)
        self.streams_total = setup.acting_ranks * cfg.envs_per_actor
        self.target = setup.make_model(learner.device)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.algo = DQN(cfg, learner.model, self.target, learner.averager, learner.optimizer)
        epoch = learner.epoch
        key = [cfg.seed, _REPLAY_STREAM, rank] + ([epoch] if epoch else [])
        self.rng = np.random.default_rng(np.random.SeedSequence(key))
        self.updates = 0
        self.credit = 0.0          # fractional updates owed to the replay ratio
        self.published_at = None   # update count when actors last got weights
        self._window = [0, 0]      # updates and env steps since the last log row

    # ------------------------------------------------------------------ data in
    def ingest(self, rollouts: list[PackedArrays]) -> None:
        timing.switch("replay")
        parts = {k: [r[k] for r in rollouts] for k in ("obs", "actions", "rewards", "flags")}
        joined = {k: v[0] if len(v) == 1 else np.concatenate(v, axis=1) for k, v in parts.items()}
        self.replay.add(joined["obs"], joined["actions"], joined["rewards"], joined["flags"])

    def weights_due(self) -> bool:
        if self.published_at is None or self.updates - self.published_at >= \
                self.cfg.weights_every:
            self.published_at = self.updates
            return True
        return False

    # ------------------------------------------------------------------ updates
    def _ready(self) -> bool:
        """Whether updates may run: the same answer on every learner, since every shard has
        had the same number of rows written."""
        rows = min(self.replay.written, self.replay.rows)
        return (rows * self.streams_total >= self.cfg.learning_starts
                and self.replay.written > self.replay.n_step + 1)

    def updates_due(self, steps: int) -> int:
        if not self._ready():
            return 0
        self.credit += self.cfg.replay_ratio * steps / self.cfg.batch_size
        due = int(self.credit)
        self.credit -= due
        return due

    def train(self, control: list[float], progress: float, between=None
              ) -> tuple[list[dict], list[float]]:
        """``between`` is called after each update (the learner keeps its sends moving)."""
        cfg = self.cfg
        due = self.updates_due(self.setup.steps_per_iteration)
        self._window[1] += self.setup.steps_per_iteration
        extras = self.averager.extras
        own = torch.tensor(control, dtype=extras.dtype)
        if due == 0:
            sums = np.array(control, dtype=np.float64)
            if self.learners > 1:
                comm.allreduce_sum_(self.comm, sums, what="the other learners at an iteration")
            return [], sums.tolist()
        beta = cfg.priority_beta + min(progress, 1.0) * (1.0 - cfg.priority_beta)
        out = []
        for _ in range(due):
            timing.switch("replay")
            sample = self.replay.sample(self.batch, self.rng, beta)
            extras.copy_(own)  # summed afresh by every allreduce
            timing.switch("gradient")
            stats = self.algo.update(sample, weighted=cfg.prioritized)
            out.append(stats)
            if stats["skipped"]:
                if cfg.nonfinite == "stop":
                    break
                continue
            timing.switch("replay")
            self.replay.update_priorities(sample.cells, stats["td"])
            self.updates += 1
            self._window[0] += 1
            if self.updates % cfg.target_update == 0:
                self.algo.sync_target()
            if between is not None:
                between()
        return out, extras.tolist()

    # ------------------------------------------------------------------ reporting
    extra_columns: list[str] = []

    def row(self, seconds: float) -> dict:
        updates, steps = self._window
        self._window = [0, 0]
        return {"updates": self.updates,
                "replay_ratio": updates * self.cfg.batch_size / steps if steps else float("nan"),
                "replay_fill": self.replay.fill(),
                "updates_per_s": updates / seconds if seconds > 0 else float("nan")}

    def summary(self) -> dict:
        return {"updates": self.updates, "batch_size": self.cfg.batch_size,
                "replay_ratio": self.cfg.replay_ratio,
                "replay_bytes_per_learner": self.replay.nbytes}

    # ------------------------------------------------------------------ checkpoints
    def shared_state(self) -> dict:
        params = torch.cat([p.detach().reshape(-1) for p in self.target.parameters()])
        return {"target": params.cpu().clone(), "updates": self.updates, "credit": self.credit,
                "published_at": self.published_at}

    def own_state(self, with_replay: bool) -> dict:
        own = {"rng": self.rng.bit_generator.state}
        if with_replay:
            own["replay"] = self.replay.state_dict()
        return own

    def load(self, shared: dict, own: dict | None) -> None:
        if shared:
            torch.nn.utils.vector_to_parameters(shared["target"].to(self.algo.device),
                                                self.target.parameters())
            self.updates, self.credit = shared["updates"], shared["credit"]
            self.published_at = shared["published_at"]
        if own:
            self.rng.bit_generator.state = own["rng"]
            if "replay" in own:
                self.replay.load_state_dict(own["replay"])


def trainer_class(cfg) -> type:
    return {"dqn": ReplayTrainer, "ppo": PPOTrainer}.get(cfg.algo, OnPolicyTrainer)
