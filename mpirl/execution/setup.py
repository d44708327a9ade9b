"""What every role derives from the config: the algorithm, the env's spaces, the layout's
counts, and seeded factories for each rank's policy, envs, collector and message buffer."""
from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from mpirl.acting.envs import EnvSpec, EnvVector, describe_env, env_ref, make_env
from mpirl.acting.messages import Fields, PackedArrays, report_fields
from mpirl.algos import registry
from mpirl.algos.api import ActingContext, Collector
from mpirl.config.fields import ConfigError
from mpirl.execution.layout import Layout
from mpirl.runtime import rng

if TYPE_CHECKING:
    import torch


_NEEDS = {"discrete": "a Discrete action space", "box": "continuous (Box) actions"}
_HAS = {"discrete": "Discrete actions", "box": "continuous (Box) actions"}


def check_action_space(cfg, algorithm, spec: EnvSpec) -> None:
    """ConfigError unless the algorithm handles the env's action space; the message names the
    registered algorithms that do."""
    kind = "discrete" if spec.discrete else "box"
    if kind in algorithm.actions:
        return
    message = (f"--algo {algorithm.name} needs "
               f"{' or '.join(_NEEDS[k] for k in algorithm.actions)}, and env '{cfg.env}' "
               f"has {_HAS[kind]}")
    fit = [name for name, a in registry.algorithms().items() if kind in a.actions]
    if fit:
        names = fit[0] if len(fit) == 1 else f"{', '.join(fit[:-1])} or {fit[-1]}"
        message += f"; use --algo {names} for it"
    raise ConfigError(message)


class RunSetup:
    """Derived, rank-independent facts of a run, and factories for its per-rank parts.
    Building one runs the algorithm's checks against the env and the layout (ConfigError)."""

    def __init__(self, cfg, layout: Layout, spec: EnvSpec | None = None):
        self.cfg = cfg
        self.layout = layout
        self.algorithm = cfg.algorithm
        if spec is None:
            env = make_env(env_ref(cfg))
            spec = describe_env(env, cfg.env)
            env.close()
        self.spec = spec
        self.acting_ranks = layout.learners if layout.self_acting else layout.actors
        self.steps_per_iteration = cfg.n_steps * cfg.envs_per_actor * sum(
            self.messages_of(r) for r in range(layout.learners))
        self.iterations = math.ceil(cfg.total_steps / self.steps_per_iteration)
        self.notes: list[str] = []  # what the lead prints at start-up (the checks add them)
        check_action_space(cfg, self.algorithm, spec)
        self.algorithm.check(self)
        # the policy in numpy (``mpirl.nets.acting``) that acting ranks act with, where it has
        # one: the lead builds it and sends it to every rank (``acting_twin``)
        self.acting = None

    @cached_property
    def n_params(self) -> int:
        """The policy's parameter count (builds one: torch)."""
        return sum(p.numel() for p in self.make_policy("cpu").parameters())

    # ------------------------------------------------------------------ counts
    def messages_of(self, learner: int) -> int:
        """Messages a learner trains on per iteration: one from each of its acting ranks, or
        as many as the execution model says."""
        count = self.algorithm.execution.messages_per_iteration
        if count is not None:
            return count(self.cfg, self.layout, learner)
        return self.layout.acting_ranks_of(learner)

    def streams_of(self, learner: int) -> int:
        """Env streams in a learner's batch: its messages x --envs-per-actor."""
        return self.messages_of(learner) * self.cfg.envs_per_actor

    @property
    def learner_streams(self) -> list[int]:
        return [self.streams_of(r) for r in range(self.layout.learners)]

    @property
    def total_streams(self) -> int:
        return self.acting_ranks * self.cfg.envs_per_actor

    def acting_index(self, rank: int) -> int:
        """Which of the ``acting_ranks`` this rank is (for per-actor exploration rates)."""
        return rank if self.layout.self_acting else rank - self.layout.learners

    # ------------------------------------------------------------------ factories
    def make_policy(self, device: str | torch.device) -> torch.nn.Module:
        """The algorithm's policy network, with the same initial weights on every rank.
        Subnormal floats are flushed to zero from here on in this process: an optimizer's
        moments of weights whose gradient stays zero (dead ReLU units) decay through the
        subnormal range, where every operation costs many times more (DQN's Adam step took
        5x as long)."""
        import torch
        torch.set_flush_denormal(True)
        rng.seed_initial_weights(self.cfg.seed)
        return self.algorithm.policy(self.cfg, self.spec).to(device)

    def acting_twin(self):
        """The policy's numpy twin (``mpirl.nets.acting``, its initial weights included) for
        the acting ranks, or None where the policy acts in torch or no rank acts for a
        learner. The lead builds it and sends it to every rank (``mpirl.train``): acting ranks
        that have one never import torch, whose import is most of a rank's start-up time."""
        if self.layout.self_acting:
            return None
        acting = getattr(self.make_policy("cpu"), "acting", None)
        return acting() if acting is not None else None

    def actor_policy(self) -> tuple[object, np.ndarray]:
        """What an acting rank acts with, and the float32 array its learner's weights are
        received into (the policy's own memory): the numpy twin where there is one, else the
        torch module on the CPU."""
        if self.acting is not None:
            return self.acting, self.acting.vector
        from mpirl.comm import FlatParameters
        model = self.make_policy("cpu")
        return model, FlatParameters(model).vector.numpy()

    def make_envs(self, rank: int) -> EnvVector:
        return EnvVector(env_ref(self.cfg), self.cfg.envs_per_actor, self.cfg.seed, rank)

    def make_collector(self, policy, rank: int, resume: dict | None = None) -> Collector:
        """The algorithm's collector on fresh envs for ``rank``. On resume it continues this
        rank's saved state where there is one, or else starts new episodes and action streams
        seeded for the resume count, so a re-laid-out run does not replay its first segment."""
        epoch = resume["epoch"] if resume else 0
        ctx = ActingContext(cfg=self.cfg, env=self.spec, policy=policy,
                            envs=self.make_envs(rank),
                            rng=rng.generator(self.cfg.seed, "actions", rank, epoch),
                            index=self.acting_index(rank), count=self.acting_ranks)
        collector = self.algorithm.collector(ctx)
        if resume:
            own = (resume.get("own") or {}).get("collector")
            if own is not None:
                collector.load_state_dict(own, epoch)
            else:
                collector.envs.restart(epoch)
        return collector

    def make_message(self, extra: Fields | None = None) -> PackedArrays:
        """The buffer of what an acting rank sends per exchange: the algorithm's experience
        fields, then the report fields, then the execution model's ``extra`` ones."""
        return PackedArrays({**self.algorithm.message(self.cfg, self.spec), **report_fields(),
                             **(extra or {})})
