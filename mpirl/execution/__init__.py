"""Execution models: how the ranks of a run are organised and the loops each role runs.

An algorithm names the model that runs it (``mpirl.algos.api.Algorithm.execution``):

- ``SYNCHRONOUS`` (``mpirl.execution.sync``): learners average gradients with one allreduce
  per update and send weights to the actors that feed them; A2C, PPO, DQN.
- ``STREAMING`` (``mpirl.execution.streaming``): actors act without waiting and stream
  unrolls to their learner; learners train on batches of whatever arrived, averaging gradients
  with one allreduce per update as synchronous learners do; IMPALA.
- ``PARAMETER_SERVER`` (``mpirl.execution.server``): workers act, compute gradients and push
  them to sharded parameter servers without waiting for each other; A3C.

Each model declares the option groups of its layout and how to lay ranks out; its loops live in the
module named by ``runner``, imported only when a run starts. That module offers
``describe(setup, run_dir, nodes) -> list[str]`` (the start-up lines) and
``run(setup, comms, run_dir, checkpointer, resume) -> int`` (the rank's exit code).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from mpirl.execution.layout import (Layout, LearnerOptions, ServerOptions, StragglerOptions,
                                    StreamingOptions, SyncOptions, plan_layout,
                                    plan_server_layout)


@dataclass(frozen=True)
class ExecutionModel:
    """How ranks are organised and which loops they run."""

    name: str
    options: tuple[type, ...]               # the option groups of its layout
    plan: Callable[[Any, int], Layout]      # (config, world size) -> Layout; raises ConfigError
    runner: str                             # module with describe() and run()
    # messages a learner trains on per iteration, (config, layout, learner) -> count; None =
    # one from each of its acting ranks
    messages_per_iteration: Callable[[Any, Layout, int], int] | None = None

    def module(self) -> ModuleType:
        return importlib.import_module(self.runner)


SYNCHRONOUS = ExecutionModel(
    "synchronous learners and actors", (LearnerOptions, SyncOptions, StragglerOptions),
    lambda cfg, size: plan_layout(size, cfg.learners), "mpirl.execution.sync")

STREAMING = ExecutionModel(
    "asynchronous actors and synchronous learners",
    (LearnerOptions, SyncOptions, StreamingOptions),
    lambda cfg, size: plan_layout(size, cfg.learners), "mpirl.execution.streaming",
    messages_per_iteration=lambda cfg, layout, learner: cfg.batch_unrolls)

PARAMETER_SERVER = ExecutionModel(
    "asynchronous workers and parameter servers", (ServerOptions,),
    lambda cfg, size: plan_server_layout(size, cfg.servers), "mpirl.execution.server")
