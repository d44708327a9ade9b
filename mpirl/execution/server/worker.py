"""An A3C worker: rollouts with its copy of the weights, A2C gradients pushed to the servers."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.runtime import exit_codes, signals
from mpirl.algos import A2C
from mpirl.acting.evaluation import evaluate_policy
from mpirl.runtime.faults import Faults
from mpirl.ps import GRADIENT, SKIP, ParameterClient, shard_bounds
from mpirl.execution.server.protocol import (CODE, EPISODES, EVAL_INDEX, EVAL_MEAN, EVAL_STD, EVALUATE,
                                      LENGTH_SUM, LOSS, LOSS_KEYS, NONFINITE, PAUSE, REQUEST,
                                      STEPS, STOP)
from mpirl.execution.checkpointing import Checkpointer
from mpirl.execution.setup import RunSetup
from mpirl.acting.messages import ON_POLICY_KEYS


class A3CWorker:
    """A worker's model, envs and gradient: collect a rollout with the weights in ``values``,
    compute the clipped A2C gradient into ``grad``."""

    def __init__(self, setup: RunSetup, rank: int, resume: dict | None = None):
        self.setup = setup
        self.model = setup.make_model("cpu")
        self.params = comm.FlatParameters(self.model)
        self.values = self.params.vector.numpy()  # the servers' replies land here
        self.grads = comm.GradientAverager(self.model.parameters(), None)
        self.grad = self.grads.flat.numpy()
        self.algo = A2C(setup.cfg, self.model, self.grads, optimizer=None)
        self.collector = setup.make_collector(self.model, rank, resume)
        self.rollout = setup.make_rollout_buffer()
        self.steps = setup.cfg.n_steps * setup.cfg.envs_per_actor

    def step(self, poison: bool = False) -> dict:
        """One rollout and its gradient; returns the loss statistics (``skipped``: the loss or
        gradient is not finite, so ``grad`` must not be applied). ``poison`` puts NaN into the
        rewards (fault injection)."""
        self.collector.collect(self.rollout)
        r = self.rollout
        if poison:
            r["rewards"][:] = np.nan
        return self.algo.gradient({k: r[k] for k in ON_POLICY_KEYS})



def run_worker(setup: RunSetup, comms: comm.RoleComms, checkpointer: Checkpointer,
               resume: dict | None = None) -> int:
    """Push gradients until the lead server says stop, then join the final checkpoint;
    returns the exit code the lead sends."""
    cfg, lay = setup.cfg, setup.layout
    servers = list(range(lay.learners))
    worker = A3CWorker(setup, comms.rank, resume)
    client = ParameterClient(comms.world, servers, shard_bounds(setup.n_params, len(servers)))
    client.fetch(worker.values)  # the servers' weights and versions (a resumed run's too)
    report = client.report
    report[EVAL_INDEX] = -1
    faults = Faults(comms.rank)
    pushes = 0
    while True:
        stats = worker.step(poison=faults.strike(pushes) == "nan")
        pushes += 1
        report[STEPS] = worker.steps
        report[EPISODES:LENGTH_SUM + 1] = worker.rollout["episodes"]  # count, sums
        report[LOSS:LOSS + len(LOSS_KEYS)] = [stats[k] for k in LOSS_KEYS]
        report[NONFINITE] = float(stats["skipped"])
        report[REQUEST] = signals.requested()
        kind = SKIP if stats["skipped"] else GRADIENT
        lead = client.exchange(worker.grad, worker.values, kind)[0]
        report[EVAL_INDEX] = -1
        if lead[STOP]:
            break
        if lead[PAUSE]:  # a checkpoint: every worker stops sending, all ranks save, go on
            client.pause()
            checkpointer.save({"role": "worker", "collector": worker.collector.state_dict()})
            client.fetch(worker.values)
            continue
        if lead[EVALUATE] >= 0:
            returns = evaluate_policy(worker.model, cfg.env, cfg.eval_episodes, seed=cfg.seed,
                                      index=int(lead[EVALUATE]))
            report[EVAL_INDEX] = lead[EVALUATE]
            report[EVAL_MEAN], report[EVAL_STD] = np.mean(returns), np.std(returns)
    client.bye()
    code = int(lead[CODE])
    if code != exit_codes.DIVERGED:
        checkpointer.save({"role": "worker", "collector": worker.collector.state_dict()})
    worker.collector.envs.close()
    return code
