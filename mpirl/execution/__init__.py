"""Execution models: how the ranks of a run are organised and the loops each role runs.

An algorithm names the model that runs it (``mpirl.algos.api.Algorithm.execution``):

- ``SYNCHRONOUS`` (``mpirl.execution.sync``): learners average gradients with one allreduce
  per update and send weights to the actors that feed them; A2C, PPO, DQN.
- ``PARAMETER_SERVER`` (``mpirl.execution.server``): workers act, compute gradients and push
  them to sharded parameter servers without waiting for each other; A3C.

Each model declares the options of its layout and how to lay ranks out; its loops live in the
module named by ``runner``, imported only when a run starts. That module offers
``describe(setup, run_dir, nodes) -> list[str]`` (the start-up lines) and
``run(setup, comms, run_dir, checkpointer, resume) -> int`` (the rank's exit code).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from mpirl.execution.layout import (Layout, LearnerOptions, ServerOptions, plan_layout,
                                    plan_server_layout)


@dataclass(frozen=True)
class ExecutionModel:
    """How ranks are organised and which loops they run."""

    name: str
    options: type                           # the option group of its layout
    plan: Callable[[Any, int], Layout]      # (config, world size) -> Layout; raises ConfigError
    runner: str                             # module with describe() and run()

    def module(self) -> ModuleType:
        return importlib.import_module(self.runner)


SYNCHRONOUS = ExecutionModel(
    "synchronous learners and actors", LearnerOptions,
    lambda cfg, size: plan_layout(size, cfg.learners), "mpirl.execution.sync")

PARAMETER_SERVER = ExecutionModel(
    "asynchronous workers and parameter servers", ServerOptions,
    lambda cfg, size: plan_server_layout(size, cfg.servers), "mpirl.execution.server")
