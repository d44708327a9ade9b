"""The plug-in surface: what an algorithm declares, and the narrow views its parts get.

An algorithm is a package (its own under ``mpirl/algos/``, or a module of yours) that builds one
``Algorithm`` and registers it (``mpirl.algos.registry.register``). Everything that makes it
itself is declared there: its option groups and defaults, its checks, its policy network, what
its acting ranks collect and send, the execution model that runs it, and what its learners (or
parameter-server workers) do with the data. The execution models own the loops, the transport,
the run records and the checkpoints, and never ask which algorithm runs.

On the synchronous execution model (``SYNCHRONOUS``), each iteration a learner

1. sets the learning rate (``Trainer.set_lr``) from the run's schedule,
2. takes its acting ranks' messages in (``Trainer.ingest``): one ``PackedArrays`` per acting
   rank, with the fields of ``Algorithm.message`` (plus the report fields of
   ``mpirl.acting.messages.report_fields``),
3. makes its averaged updates (``Trainer.train``), each through a ``GradientAverager`` from
   ``LearnerContext.averager``: the run's control values (a stop request, a checkpoint due)
   ride in those allreduces, and an algorithm's own values go in named extra slots,
4. and the weights of ``LearnerContext.policy`` go to the actors as ``Algorithm.publication``
   says.

A trainer's state goes into checkpoints through ``state_dict`` (identical on every learner)
and ``own_state_dict`` (this learner's); the policy's weights are saved by the execution model.

On the streaming model (``STREAMING``), a learner runs the same iteration with a ``Trainer``,
but its messages are the unrolls that arrived first (``--batch-unrolls`` of them, several may
come from one actor), acted with weights some updates older than the learner's: the
algorithm's message should carry what it needs to correct for that (IMPALA's behaviour
log-probabilities). Actors never wait for the learner's reply.

On the parameter-server model (``PARAMETER_SERVER``), a ``Worker`` turns each message into a
gradient of the policy's parameters, which the servers apply with the configured optimizer.

``tests/plugins/reinforce.py`` is a complete algorithm written against this surface alone.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from mpirl.acting.envs import EnvSpec, EnvVector
from mpirl.acting.messages import Fields, PackedArrays
from mpirl.config.fields import ConfigError, option
from mpirl.execution import PARAMETER_SERVER, STREAMING, SYNCHRONOUS, ExecutionModel
from mpirl.runtime import rng as streams

if TYPE_CHECKING:  # imported for annotations only: building an Algorithm needs no MPI
    import torch

    from mpirl.comm import FlatParameters, GradientAverager
    from mpirl.execution.setup import RunSetup

__all__ = ["ActingContext", "Algorithm", "Collector", "ConfigError", "Control",
           "EveryIteration", "EveryUpdates", "LearnerContext", "PARAMETER_SERVER", "Policy",
           "Publication", "STREAMING", "SYNCHRONOUS", "Trainer", "Worker", "WorkerContext",
           "option"]


# ---------------------------------------------------------------------- acting
class Policy(Protocol):
    """The network actors act with (a ``torch.nn.Module``): also what evaluation plays and
    ``policy.pt`` holds. A module that also has ``acting()``, returning its numpy twin (an
    ``mpirl.nets.acting.ActingPolicy`` with the same acting methods), has actors that act
    with the twin the lead sends them and never import torch."""

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False
            ) -> np.ndarray:
        """Actions for a batch of observations (the mode when ``deterministic``)."""

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """What the env receives for ``act``'s actions."""


class Collector(Protocol):
    """Fills a message with experience from ``envs``, acting with the policy."""

    envs: EnvVector

    def collect(self, out: PackedArrays, progress: float) -> None:
        """Write one message's experience fields and ``out["episodes"]`` (finished episodes,
        sum of their returns, sum of their lengths). ``progress``: fraction of the budget
        done."""

    def state_dict(self) -> dict:
        """Everything needed to continue exactly (random streams, env states)."""

    def load_state_dict(self, state: dict, epoch: int) -> int:
        """Continue from ``state_dict()``; returns how many envs had to start anew."""


@dataclass
class ActingContext:
    """What a collector is built from, on an acting rank."""

    cfg: Any
    env: EnvSpec
    policy: Any               # the rank's copy of the policy (CPU), kept current by the run
    envs: EnvVector           # --envs-per-actor envs, seeded for this rank
    rng: np.random.Generator  # this rank's "actions" stream
    index: int                # which acting rank this is, 0 .. count - 1
    count: int                # acting ranks in the run


# ---------------------------------------------------------------------- weight publication
class Publication:
    """When learners send their actors fresh weights (synchronous model)."""

    # True: a learner asks for the next messages before it trains on the current ones, so its
    # actors collect while it trains, with weights up to one iteration old
    pipelined = False

    def due(self, updates: int) -> bool:
        """Whether the next request carries fresh weights, given the updates made so far."""
        return True

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EveryIteration(Publication):
    """On-policy: fresh weights with every request, and the messages that come back were
    collected with exactly those weights."""


class EveryUpdates(Publication):
    """Pipelined: actors collect the next messages while the learners train on these, and get
    fresh weights once ``every`` updates have been made since the last ones."""

    pipelined = True

    def __init__(self, every: int):
        self.every = every
        self.published_at: int | None = None

    def due(self, updates: int) -> bool:
        if self.published_at is None or updates - self.published_at >= self.every:
            self.published_at = updates
            return True
        return False

    def state_dict(self) -> dict:
        return {"published_at": self.published_at}

    def load_state_dict(self, state: dict) -> None:
        self.published_at = state.get("published_at")


# ---------------------------------------------------------------------- learners
class Control:
    """The run's values that every learner must see summed, once per iteration: a stop signal
    on any rank, a checkpoint due by time on the lead. They ride in every gradient allreduce of
    the trainer's averagers; an iteration that makes none reduces them on its own."""

    NAMES = ("stop", "checkpoint")

    def __init__(self) -> None:
        self.local = np.zeros(len(self.NAMES))
        self.summed = np.zeros(len(self.NAMES))
        self.reduced = False  # summed in this iteration


class LearnerContext:
    """A learner rank as a trainer sees it.

    ``policy`` is the network actors act with, on ``device``, its parameters views into
    ``policy_params.vector`` (identical initial weights on every learner); the trainer trains
    it and may build further networks (``network``). ``learner_streams[i]`` is the number of
    env streams in learner i's messages (its acting ranks times --envs-per-actor).
    """

    def __init__(self, cfg, env: EnvSpec, device: "torch.device", policy: "torch.nn.Module",
                 policy_params: "FlatParameters", comm, rank: int,
                 learner_streams: Sequence[int], steps_per_iteration: int, epoch: int,
                 control: Control, build_policy: Callable[[Any], "torch.nn.Module"],
                 poll: Callable[[], None]):
        self.cfg, self.env, self.device = cfg, env, device
        self.policy, self.policy_params = policy, policy_params
        self.comm = comm                  # the learners' communicator
        self.rank = rank                  # world rank == index among the learners
        self.learner_streams = tuple(learner_streams)
        self.steps_per_iteration = steps_per_iteration  # env steps per iteration, all learners
        self.epoch = epoch                # resume count (0 for a fresh run)
        self.control = control
        self._build_policy, self._poll = build_policy, poll
        self.averagers: list["GradientAverager"] = []  # every one ``averager`` built
        # where rollouts may be cut short (``Algorithm.cut_rollouts``): this learner's share of
        # the current iteration's steps, set before ``train`` (None: ``share``)
        self.batch_share: float | None = None
        self.shared_tensors: Callable[[], list["torch.Tensor"]] = list

    @property
    def lead(self) -> bool:
        return self.rank == 0

    @property
    def learners(self) -> int:
        return len(self.learner_streams)

    @property
    def streams(self) -> int:
        """Env streams in this learner's messages."""
        return self.learner_streams[self.rank]

    @property
    def total_streams(self) -> int:
        return sum(self.learner_streams)

    @property
    def share(self) -> float:
        """This learner's fraction of an iteration's experience."""
        return self.streams / self.total_streams

    def rng(self, stream: str) -> np.random.Generator:
        """This learner's generator of a named stream (``mpirl.runtime.rng``)."""
        return streams.generator(self.cfg.seed, stream, self.rank, self.epoch)

    def averager(self, params, share: float | None = None, extras: Sequence[str] = ()
                 ) -> "GradientAverager":
        """Averages the gradients of ``params`` over the learners with one allreduce.
        ``share`` (default: ``self.share``) weights this learner's loss; ``extras`` name
        values summed in the same allreduce (``averager.extras[averager.slots[name]]``)."""
        from mpirl.comm import GradientAverager
        averaging = getattr(self.cfg, "sync", "gradients") == "average"
        # with --sync average, the first averager also averages the tensors the trainer lists
        # (``shared_tensors``: the learner sets it once the trainer exists)
        shared = (lambda: self.shared_tensors()) if averaging and not self.averagers else None
        averager = GradientAverager(params, self.comm, self.share if share is None else share,
                                    extras=extras, control=self.control,
                                    average_every=self.cfg.average_every if averaging else None,
                                    shared=shared)
        self.averagers.append(averager)
        return averager

    def network(self) -> "torch.nn.Module":
        """Another network of the policy's architecture, with its initial weights, on
        ``device`` (a target network, say)."""
        return self._build_policy(self.device)

    def poll(self) -> None:
        """Let the execution model's transfers progress: call between updates."""
        self._poll()


class Trainer(abc.ABC):
    """What an algorithm does on a synchronous learner, iteration after iteration."""

    # per-update statistics, averaged into progress rows; a new one goes at the end, so that
    # checkpoints written before it still resume
    stat_keys: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()     # further progress.csv columns that ``row`` fills
    # what --checkpoint-every counts: "iterations" (one per rollout batch, as on-policy
    # algorithms count their updates) or "updates" (``self.updates``, as an algorithm whose
    # iterations make many updates counts them in its other options)
    checkpoint_unit: str = "iterations"

    def __init__(self, ctx: LearnerContext):
        self.ctx = ctx
        self.updates = 0  # updates applied so far: the weight publication counts them

    @abc.abstractmethod
    def ingest(self, messages: list[PackedArrays]) -> None:
        """Take this iteration's messages in: one per acting rank (synchronous), or the
        unrolls that arrived first (streaming). The buffers are reused: copy what must
        outlive the call."""

    @abc.abstractmethod
    def train(self, progress: float) -> list[dict]:
        """Make this iteration's updates; one dict of statistics per update, with
        ``skipped`` True where the loss or gradient was not finite (on every learner alike:
        ``GradientAverager.finite``). After a skipped update with ``--nonfinite stop``,
        return at once. ``progress``: fraction of the budget done."""

    def optimizers(self) -> list:
        """The optimizers whose learning rate follows the run's schedule."""
        return []

    def shared_tensors(self) -> list["torch.Tensor"]:
        """Tensors besides the trained parameters that every learner holds alike (a target
        network's parameters): ``--sync average`` averages them with the parameters."""
        return []

    def set_lr(self, lr: float) -> None:
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                group["lr"] = lr

    def row(self, seconds: float) -> dict:
        """Values for this trainer's ``columns`` at a progress row (``seconds`` since the
        previous row)."""
        return {}

    def summary(self) -> dict:
        """Keys added to summary.json."""
        return {}

    def update_work(self) -> int | None:
        """The arithmetic of one update, roughly (parameters trained x samples on this
        learner), for the time breakdown's verdict on whether a GPU would help; None: judged
        by the policy's size alone."""
        return None

    def state_dict(self) -> dict:
        """The trainer's state that every learner holds identically (optimizer moments,
        other networks, counters), for checkpoints; the lead's copy is saved."""
        return {}

    def own_state_dict(self) -> dict:
        """This learner's own state (random streams, a replay shard), for checkpoints."""
        return {}

    def load_state_dict(self, shared: dict | None, own: dict | None) -> None:
        """Continue from a checkpoint: ``shared`` from ``state_dict``, ``own`` from this
        rank's ``own_state_dict`` (None after a re-layout)."""


# ---------------------------------------------------------------------- parameter servers
@dataclass
class WorkerContext:
    """A parameter-server worker as its gradient computation sees it."""

    cfg: Any
    env: EnvSpec
    policy: Any       # the worker's copy (CPU), whose weights the servers' replies refresh
    rank: int
    epoch: int

    def averager(self, params) -> "GradientAverager":
        """A flat gradient buffer over ``params`` (nothing to average: the servers apply it)."""
        from mpirl.comm import GradientAverager
        return GradientAverager(params, None)


class Worker(abc.ABC):
    """What an algorithm does on a parameter-server worker: a gradient of each message."""

    stat_keys: tuple[str, ...] = ()  # per-gradient statistics, averaged into progress rows

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.grad: np.ndarray  # the flat gradient of the policy's parameters, float32

    @abc.abstractmethod
    def gradient(self, message: PackedArrays) -> dict:
        """Write the gradient of one message into ``grad``; returns its statistics, with
        ``skipped`` True where it is not finite (then it is not sent)."""


# ---------------------------------------------------------------------- the declaration
def _no_check(_: Any) -> None:
    return None


def _no_lines(_: Any) -> list[str]:
    return []


def _every_iteration(_: Any) -> Publication:
    return EveryIteration()


def _resolve(ref):
    """A class given as itself or as "module:Class"."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Algorithm:
    """Everything that makes an algorithm itself, declared in one place and registered once.

    ``options``: the option groups it reads besides the general ones (``mpirl.config.general``)
    and its execution model's, its own first; ``defaults``: its values for fields whose
    defaults differ from the fields' own (a value the user gives always wins).
    ``validate(cfg)``: checks of its values, before any MPI traffic. ``check(setup)``: checks
    against the env and the layout (``mpirl.execution.setup.RunSetup``), on every rank before
    training. ``actions``: the action spaces it handles ("discrete", "box").
    ``startup(setup)``: lines the start-up message adds. ``cheaper_updates``: how
    its options cut the learners' gradient work per env step, for the time breakdown's
    verdict when that work dominates.
    """

    name: str
    description: str
    execution: ExecutionModel
    policy: Callable[[Any, EnvSpec], "torch.nn.Module"]       # (cfg, env) -> Policy module
    collector: Callable[[ActingContext], Collector]
    message: Callable[[Any, EnvSpec], Fields]                 # experience fields per message
    # its learners (on SYNCHRONOUS, STREAMING) or workers (on PARAMETER_SERVER): the class, or
    # "module:Class" to import it only where one runs (``trainer_class``, ``worker_class``),
    # so that acting ranks, which never train, need not import torch
    trainer: type[Trainer] | str | None = None
    worker: type[Worker] | str | None = None
    publication: Callable[[Any], Publication] = _every_iteration
    options: tuple[type, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    validate: Callable[[Any], None] = _no_check
    check: Callable[["RunSetup"], None] = _no_check
    startup: Callable[["RunSetup"], list[str]] = _no_lines
    cheaper_updates: str = "a larger batch per update spreads its fixed cost over more samples"
    # the action spaces it handles, of "discrete" and "box": another env is refused at
    # start-up with the registered algorithms that handle it
    actions: tuple[str, ...] = ("discrete", "box")
    # synchronous learners: whether its trainer supports --sync average (it calls
    # ``GradientAverager.stepped`` after every optimizer step and lists the tensors besides
    # its trained parameters that learners must hold alike in ``Trainer.shared_tensors``),
    # and --straggler-cutoff (its trainer takes rollouts of unequal lengths, ``lengths``)
    model_averaging: bool = False
    cut_rollouts: bool = False

    @property
    def trainer_class(self) -> type[Trainer]:
        return _resolve(self.trainer)

    @property
    def worker_class(self) -> type[Worker]:
        return _resolve(self.worker)

    def __post_init__(self) -> None:
        for ref in (self.trainer, self.worker):
            if isinstance(ref, str) and ref.count(":") != 1:
                raise ValueError(f"algorithm {self.name!r}: {ref!r} is not 'module:Class'")
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"algorithm name {self.name!r}: use lower-case letters, digits "
                             "and underscores")
        if self.execution in (SYNCHRONOUS, STREAMING) and self.trainer is None:
            raise ValueError(f"algorithm {self.name!r} runs on synchronous learners: give it "
                             "a trainer")
        if self.execution is PARAMETER_SERVER and self.worker is None:
            raise ValueError(f"algorithm {self.name!r} runs on parameter servers: give it a "
                             "worker")
