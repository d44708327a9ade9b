"""What every role derives from the config: env spec, model shape, counts, seeded factories."""
from __future__ import annotations

import math

import numpy as np
import torch

from mpirl.config import Config
from mpirl.envs import EnvSpec, EnvVector, describe_env, make_env
from mpirl.layout import Layout
from mpirl.models import ActorCritic, build_policy
from mpirl.roles.collect import RolloutCollector
from mpirl.rollout import PackedArrays, rollout_fields

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
        self.n_params = sum(p.numel() for p in self.make_model("cpu").parameters())
        acting = layout.learners if layout.self_acting else layout.actors
        self.steps_per_iteration = cfg.n_steps * cfg.envs_per_actor * acting
        self.iterations = math.ceil(cfg.total_steps / self.steps_per_iteration)

    def make_model(self, device: str | torch.device) -> ActorCritic:
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every rank
        return build_policy(self.cfg, self.spec).to(device)

    def make_envs(self, rank: int) -> EnvVector:
        return EnvVector(self.cfg.env, self.cfg.envs_per_actor, self.cfg.seed, rank)

    def make_collector(self, model: ActorCritic, rank: int, resume: dict | None = None
                       ) -> RolloutCollector:
        """A collector on fresh envs for ``rank``. On resume it continues this rank's saved
        state where there is one, or else starts new episodes and action streams seeded for the
        resume count, so a re-laid-out run does not replay its first segment."""
        epoch = resume["epoch"] if resume else 0
        key = [self.cfg.seed, _ACTION_STREAM, rank] + ([epoch] if epoch else [])
        rng = np.random.default_rng(np.random.SeedSequence(key))
        collector = RolloutCollector(model, self.make_envs(rank), self.cfg.n_steps,
                                     self.cfg.gamma, rng)
        if resume:
            own = (resume.get("own") or {}).get("collector")
            if own is not None:
                collector.load_state_dict(own, epoch)
            else:
                collector.envs.restart(epoch)
        return collector

    def make_rollout_buffer(self) -> PackedArrays:
        return PackedArrays(rollout_fields(self.spec, self.cfg.n_steps, self.cfg.envs_per_actor))
