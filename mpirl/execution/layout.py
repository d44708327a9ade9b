"""Which rank plays which role. Pure arithmetic, no MPI, so it is validated before any traffic.

Synchronous algorithms: ranks ``0 .. L-1`` are learners and the rest are actors; actor ``j``
(counting actors from 0) serves learner ``j % L``. When the world has no rank left over for
actors, every learner steps its own environments (with one rank, that rank acts and learns).

Streaming (IMPALA): the same split as synchronous algorithms; actors do not wait for their
learner between unrolls.

Parameter servers (A3C): ranks ``0 .. S-1`` are parameter servers and the rest are
workers that act and compute gradients; the same arithmetic holds with servers in the
learners' place (``servers=True`` only renames the roles).
"""
from __future__ import annotations

from dataclasses import dataclass

from mpirl.config.fields import ConfigError, option


@dataclass
class LearnerOptions:
    """learners and actors"""

    learners: int = option(1, "Number of learner ranks; the other ranks are actors.",
                           bounds="[1, inf)")


@dataclass
class SyncOptions:
    """learner synchronization"""

    sync: str = option(
        "gradients", "How learners stay together: 'gradients' averages every update's "
        "gradient (identical weights always); 'average' (a2c, ppo, dqn, r2d2, sac, td3, "
        "d4pg, impala) lets each learner update its own copy from its own actors' data and "
        "averages the weights every --average-every updates (one allreduce per K updates, no "
        "waiting in between).", choices=("gradients", "average"))
    average_every: int = option(8, "With --sync average: updates between two averaging steps.",
                                bounds="[1, inf)")
    average_moments: bool = option(
        False, "With --sync average: average the optimizer's moments with the weights (twice "
        "or three times the bytes); unset, each learner keeps its own.")

    @staticmethod
    def validate(cfg) -> None:
        if cfg.sync == "average" and not cfg.algorithm.model_averaging:
            raise ConfigError(f"--sync average is not available for --algo {cfg.algo}: its "
                              "learners average gradients only (--sync gradients)")
        if cfg.sync == "average" and getattr(cfg, "target_kl", None) is not None:
            raise ConfigError("--target-kl stops every learner's epochs at the same minibatch "
                              "by averaging the KL at every update, which --sync average does "
                              "not do: unset --target-kl, or use --sync gradients")


@dataclass
class StragglerOptions:
    """slow actors"""

    straggler_cutoff: float = option(
        0.0, "A2C, PPO: once this share of a learner's actors have delivered their rollouts, "
        "the others send what they have collected (at least --straggler-min-share of "
        "--n-steps) and the learner trains on the shorter rollouts; 0 = always wait for "
        "whole rollouts.", bounds="[0, 1]")
    straggler_min_share: float = option(
        0.25, "With --straggler-cutoff: the share of --n-steps an actor collects before it "
        "may be cut.", bounds="(0, 1]")

    @staticmethod
    def validate(cfg) -> None:
        if cfg.straggler_cutoff > 0 and not cfg.algorithm.cut_rollouts:
            from mpirl.algos import registry
            takers = [a.name for a in registry.algorithms().values() if a.cut_rollouts]
            raise ConfigError(f"--straggler-cutoff is not available for --algo {cfg.algo}: it "
                              f"cuts on-policy rollouts ({', '.join(takers)})")
        if cfg.straggler_cutoff > 0 and getattr(cfg, "intrinsic", "none") != "none":
            raise ConfigError("--straggler-cutoff does not combine with --intrinsic yet: RND's "
                              "statistics need whole rollouts")


@dataclass
class StreamingOptions:
    """asynchronous actors"""

    batch_unrolls: int = option(
        2, "Unrolls (--n-steps x --envs-per-actor steps from one actor) per learner update, "
        "from whichever of the learner's actors delivered first.", bounds="[1, inf)")
    max_in_flight: int = option(
        2, "Unrolls an actor may have sent and its learner not yet taken; past that it waits "
        "(back-pressure, counted in progress.csv).", bounds="[1, inf)")
    max_policy_lag: int = option(
        0, "Drop unrolls acted with weights more than this many learner updates old (counted "
        "in progress.csv); 0 = train on every unroll.", bounds="[0, inf)")


@dataclass
class ServerOptions:
    """asynchronous workers and parameter servers"""

    servers: int = option(1, "Parameter-server ranks (the first ranks); the others are "
                          "workers. The weight vector is split evenly over the servers.",
                          bounds="[1, inf)")
    max_staleness: int = option(
        0, "A server drops gradients computed from weights more than this many of its "
        "updates old (counted in progress.csv); 0 = apply every gradient.", bounds="[0, inf)")


@dataclass(frozen=True)
class Layout:
    """The role of every rank in a world of ``size`` ranks."""

    size: int
    learners: int
    servers: bool = False  # the first ``learners`` ranks are parameter servers (A3C)

    @property
    def actors(self) -> int:
        return self.size - self.learners

    @property
    def self_acting(self) -> bool:
        """True when learners step their own envs (no separate actor ranks)."""
        return self.actors == 0

    def is_learner(self, rank: int) -> bool:
        return rank < self.learners

    def learner_of(self, rank: int) -> int:
        """The learner index (== its world rank) that the given rank belongs to."""
        return rank if self.is_learner(rank) else (rank - self.learners) % self.learners

    def actors_of(self, learner: int) -> list[int]:
        """World ranks of the actors that send to this learner, in a fixed order."""
        return [r for r in range(self.learners, self.size) if self.learner_of(r) == learner]

    def acting_ranks_of(self, learner: int) -> int:
        """How many ranks collect data for this learner."""
        return 1 if self.self_acting else len(self.actors_of(learner))

    def role(self, rank: int) -> str:
        if self.servers:
            return "server" if self.is_learner(rank) else "worker"
        if self.is_learner(rank):
            return "learner+actor" if self.self_acting else "learner"
        return "actor"


def plan_layout(size: int, learners: int) -> Layout:
    """Check the requested split of ``size`` ranks and return it, or raise ConfigError."""
    if learners < 1:
        raise ConfigError(f"--learners must be at least 1, got {learners}")
    if learners > size:
        raise ConfigError(f"--learners {learners} is more than the {size} MPI rank(s) launched; "
                          f"use --learners {size} or fewer, or launch more ranks")
    actors = size - learners
    if 0 < actors < learners:
        raise ConfigError(
            f"{size} ranks with --learners {learners} leaves {actors} actor(s) for {learners} "
            f"learners; every learner needs at least one actor (use --learners <= {size // 2}), "
            f"or set --learners {size} so that every rank acts and learns")
    return Layout(size=size, learners=learners)


def plan_server_layout(size: int, servers: int) -> Layout:
    """Check an asynchronous split of ``size`` ranks into ``servers`` parameter servers and
    workers, and return it, or raise ConfigError."""
    if servers < 1:
        raise ConfigError(f"--servers must be at least 1, got {servers}")
    if servers >= size:
        raise ConfigError(
            f"--servers {servers} with {size} MPI rank(s) leaves no worker: A3C needs at least "
            f"one rank besides the parameter servers; launch at least {servers + 1} ranks "
            f"(mpirun -n {servers + 1} or more) or use fewer --servers")
    return Layout(size=size, learners=servers, servers=True)
