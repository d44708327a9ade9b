"""What every role derives from the config: env spec, model shape, counts, seeded factories."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from mpirl.algos import actor_epsilon
from mpirl.config.fields import ConfigError
from mpirl.config.schema import Config
from mpirl.acting.envs import EnvSpec, EnvVector, describe_env, is_atari, make_env
from mpirl.execution.layout import Layout
from mpirl.nets.models import build_policy, is_image
from mpirl.replay import Prioritization, ReplayShard
from mpirl.acting.collect import RolloutCollector, TransitionCollector
from mpirl.acting.messages import PackedArrays, rollout_fields, transition_fields

_ACTION_STREAM = 2


class RunSetup:
    """Derived, rank-independent facts of a run, and factories for its per-rank parts."""

    def __init__(self, cfg: Config, layout: Layout, spec: EnvSpec | None = None):
        self.cfg = cfg
        self.layout = layout
        if spec is None:
            env = make_env(cfg.env)
            spec = describe_env(env, cfg.env)
            env.close()
        self.spec = spec
        if cfg.algo == "dqn" and not spec.discrete:
            raise ConfigError(f"--algo dqn needs a Discrete action space, and env '{cfg.env}' "
                              f"has continuous (Box) actions; use --algo ppo or a2c for it")
        if cfg.precision != "fp32" and (cfg.algo not in ("a2c", "ppo") or not is_image(spec)):
            raise ConfigError(f"--precision {cfg.precision} applies to the CNN policy of a2c "
                              f"and ppo on image observations; env '{cfg.env}' with --algo "
                              f"{cfg.algo} trains an MLP, which computes in fp32")
        self.n_params = sum(p.numel() for p in self.make_model("cpu").parameters())
        self.acting_ranks = layout.learners if layout.self_acting else layout.actors
        self.steps_per_iteration = cfg.n_steps * cfg.envs_per_actor * self.acting_ranks
        self.iterations = math.ceil(cfg.total_steps / self.steps_per_iteration)
        if cfg.algo == "dqn":
            self._plan_replay()
        if cfg.algo == "ppo":
            self._plan_minibatches()

    def _plan_minibatches(self) -> None:
        """Minibatches per epoch: the rollout batch over --batch-size, the same on every
        learner (each splits its own part of the batch that many ways)."""
        cfg, per_iter = self.cfg, self.steps_per_iteration
        if cfg.batch_size > per_iter:
            raise ConfigError(
                f"--batch-size {cfg.batch_size} is larger than the rollout batch: --n-steps "
                f"{cfg.n_steps} x --envs-per-actor {cfg.envs_per_actor} x {self.acting_ranks} "
                f"acting rank(s) = {per_iter}; lower it or collect more per iteration")
        self.minibatches = per_iter // cfg.batch_size
        smallest = min(self.layout.acting_ranks_of(r) for r in range(self.layout.learners))
        if smallest * cfg.n_steps * cfg.envs_per_actor < self.minibatches:
            raise ConfigError(f"--batch-size {cfg.batch_size} makes {self.minibatches} "
                              f"minibatches, more than a learner has samples")

    # ------------------------------------------------------------------ DQN replay geometry
    def _plan_replay(self) -> None:
        """Every env stream gets the same number of replay rows, so every learner's shard
        fills at the same pace and the learners' decisions (whether to train, how often)
        agree without a message."""
        cfg = self.cfg
        streams = self.acting_ranks * cfg.envs_per_actor
        self.replay_rows = cfg.replay_size // streams
        need = cfg.n_steps + cfg.n_step + 2
        if self.replay_rows < need:
            raise ConfigError(
                f"--replay-size {cfg.replay_size:,} spread over {streams} env streams "
                f"({self.acting_ranks} acting ranks x {cfg.envs_per_actor} envs) leaves "
                f"{self.replay_rows} steps per stream; each needs at least --n-steps + "
                f"--n-step + 2 = {need}: raise --replay-size to {need * streams:,} or more")
        self.replay_bytes = [
            ReplayShard.estimate_nbytes(self.replay_rows, self.streams_of(rank),
                                        self.spec.obs_shape, self.spec.obs_dtype,
                                        self.spec.action_shape, self.spec.action_dtype,
                                        cfg.prioritized)
            for rank in range(self.layout.learners)]

    def streams_of(self, learner: int) -> int:
        return self.layout.acting_ranks_of(learner) * self.cfg.envs_per_actor

    def batch_of(self, learner: int) -> int:
        """This learner's part of the global minibatch, in proportion to its env streams."""
        lay, total = self.layout, self.cfg.batch_size
        streams = [self.streams_of(r) for r in range(lay.learners)]
        parts = [total * s // sum(streams) for s in streams]
        for r in range(total - sum(parts)):  # the remainder, one each, to the first learners
            parts[r % lay.learners] += 1
        return parts[learner]

    def make_replay(self, learner: int) -> ReplayShard:
        cfg = self.cfg
        prio = Prioritization(alpha=cfg.priority_alpha) if cfg.prioritized else None
        return ReplayShard(self.replay_rows, self.streams_of(learner), self.spec.obs_shape,
                           self.spec.obs_dtype, self.spec.action_shape, self.spec.action_dtype,
                           cfg.n_step, cfg.gamma, prio)

    def make_model(self, device: str | torch.device) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every rank
        return build_policy(self.cfg, self.spec).to(device)

    def make_envs(self, rank: int) -> EnvVector:
        return EnvVector(self.cfg.env, self.cfg.envs_per_actor, self.cfg.seed, rank)

    def make_collector(self, model: torch.nn.Module, rank: int, resume: dict | None = None
                       ) -> RolloutCollector | TransitionCollector:
        """A collector on fresh envs for ``rank``. On resume it continues this rank's saved
        state where there is one, or else starts new episodes and action streams seeded for the
        resume count, so a re-laid-out run does not replay its first segment."""
        epoch = resume["epoch"] if resume else 0
        key = [self.cfg.seed, _ACTION_STREAM, rank] + ([epoch] if epoch else [])
        rng = np.random.default_rng(np.random.SeedSequence(key))
        if self.cfg.algo == "dqn":
            epsilon_at = functools.partial(actor_epsilon, self.cfg, index=self.acting_index(rank),
                                           count=self.acting_ranks)
            collector = TransitionCollector(model, self.make_envs(rank), self.cfg.n_steps, rng,
                                            epsilon_at)
        else:
            collector = RolloutCollector(model, self.make_envs(rank), self.cfg.n_steps,
                                         self.cfg.gamma, rng, *self.atari_training())
        if resume:
            own = (resume.get("own") or {}).get("collector")
            if own is not None:
                collector.load_state_dict(own, epoch)
            else:
                collector.envs.restart(epoch)
        return collector

    def atari_training(self) -> tuple[bool, bool]:
        """(clip rewards, a lost life ends the returns): as configured, else on for Atari."""
        cfg, atari = self.cfg, is_atari(self.cfg.env)
        return (atari if cfg.clip_rewards is None else cfg.clip_rewards,
                atari if cfg.episodic_life is None else cfg.episodic_life)

    def make_rollout_buffer(self) -> PackedArrays:
        """The message an acting rank sends per iteration: a rollout, or a chunk of replay
        rows."""
        fields = transition_fields if self.cfg.algo == "dqn" else rollout_fields
        return PackedArrays(fields(self.spec, self.cfg.n_steps, self.cfg.envs_per_actor))

    def acting_index(self, rank: int) -> int:
        """Which of the ``acting_ranks`` this rank is (for per-actor exploration rates)."""
        return rank if self.layout.self_acting else rank - self.layout.learners
