"""A parameter-server worker: messages collected with its copy of the weights, the algorithm's
gradient of each pushed to the servers."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.acting.envs import env_ref
from mpirl.acting.evaluation import evaluate_policy
from mpirl.algos.api import WorkerContext
from mpirl.execution.checkpointing import Checkpointer
from mpirl.execution.server.protocol import (CODE, EPISODES, EVAL_INDEX, EVAL_MEAN, EVAL_STD,
                                             EVALUATE, MAX_STATS, NONFINITE, PAUSE, PROGRESS,
                                             REQUEST, STATS, STEPS, STOP)
from mpirl.execution.setup import RunSetup
from mpirl.ps import GRADIENT, SKIP, ParameterClient, shard_bounds
from mpirl.runtime import exit_codes, signals
from mpirl.runtime.faults import Faults, poison_rewards


class WorkerRank:
    """A worker's copy of the policy, its envs and its gradient: ``step`` collects a message
    with the weights in ``values`` and computes the algorithm's gradient of it into ``grad``."""

    def __init__(self, setup: RunSetup, rank: int, resume: dict | None = None):
        cfg = setup.cfg
        self.policy = setup.make_policy("cpu")
        self.values = comm.FlatParameters(self.policy).vector.numpy()  # replies land here
        self.collector = setup.make_collector(self.policy, rank, resume)
        self.message = setup.make_message()
        self.worker = setup.algorithm.worker_class(WorkerContext(
            cfg=cfg, env=setup.spec, policy=self.policy, rank=rank,
            epoch=resume["epoch"] if resume else 0))
        self.stat_keys = self.worker.stat_keys
        if len(self.stat_keys) > MAX_STATS:
            raise ValueError(f"--algo {cfg.algo}: a worker reports at most {MAX_STATS} "
                             f"statistics, not {len(self.stat_keys)}")
        self.steps = cfg.n_steps * cfg.envs_per_actor  # env steps per gradient

    @property
    def grad(self) -> np.ndarray:
        return self.worker.grad

    def step(self, progress: float = 0.0, poison: bool = False) -> dict:
        """One message and its gradient; returns the gradient's statistics (``skipped``: not
        finite, so ``grad`` must not be applied). ``poison`` puts NaN into the rewards (fault
        injection)."""
        self.collector.collect(self.message, progress)
        if poison:
            poison_rewards(self.message)
        return self.worker.gradient(self.message)


def run_worker(setup: RunSetup, comms: comm.RoleComms, checkpointer: Checkpointer,
               resume: dict | None = None) -> int:
    """Push gradients until the lead server says stop, then join the final checkpoint;
    returns the exit code the lead sends."""
    cfg, lay = setup.cfg, setup.layout
    me = WorkerRank(setup, comms.rank, resume)
    values, keys = me.values, me.stat_keys
    servers = list(range(lay.learners))
    client = ParameterClient(comms.world, servers, shard_bounds(setup.n_params, len(servers)))
    client.fetch(values)  # the servers' weights and versions (a resumed run's too)
    report = client.report
    report[EVAL_INDEX] = -1
    faults = Faults(comms.rank)
    progress, pushes = 0.0, 0
    while True:
        stats = me.step(progress, poison=faults.strike(pushes) == "nan")
        pushes += 1
        report[STEPS] = me.steps
        report[EPISODES:EPISODES + 3] = me.message["episodes"]  # count, sums
        report[STATS:STATS + len(keys)] = [stats[k] for k in keys]
        report[NONFINITE] = float(stats["skipped"])
        report[REQUEST] = signals.requested()
        kind = SKIP if stats["skipped"] else GRADIENT
        lead = client.exchange(me.grad, values, kind)[0]
        progress = float(lead[PROGRESS])
        report[EVAL_INDEX] = -1
        if lead[STOP]:
            break
        if lead[PAUSE]:  # a checkpoint: every worker stops sending, all ranks save, go on
            client.pause()
            checkpointer.save({"role": "worker", "collector": me.collector.state_dict()})
            client.fetch(values)
            continue
        if lead[EVALUATE] >= 0:
            returns = evaluate_policy(me.policy, env_ref(cfg), cfg.eval_episodes, seed=cfg.seed,
                                      index=int(lead[EVALUATE]), interrupt=signals.requested)
            if returns is not None:  # (else given up at a stop signal, which the next report
                report[EVAL_INDEX] = lead[EVALUATE]  # carries: the run ends without it)
                report[EVAL_MEAN], report[EVAL_STD] = np.mean(returns), np.std(returns)
    client.bye()
    code = int(lead[CODE])
    if code != exit_codes.DIVERGED:
        checkpointer.save({"role": "worker", "collector": me.collector.state_dict()})
    me.collector.envs.close()
    return code
