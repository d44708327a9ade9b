"""A3C: asynchronous advantage actor-critic over a sharded parameter server (Mnih et al. 2016,
arXiv:1602.01783).

Workers each step their own envs for ``--n-steps`` steps, compute the A2C gradient of that
rollout on their copy of the weights, push it to the servers (``mpirl.ps``) and continue with
the fresh weights that come back; no worker waits for another. The servers hold the weights
and the shared optimizer statistics and apply gradients in arrival order.

The first server (world rank 0) is the lead: it counts env steps from the workers' reports,
writes progress rows, asks a worker to evaluate now and then (reply slot ``evaluate``; the
result comes back in that worker's next report), and decides when the run ends (budget,
target return, stop signal, non-finite gradient). Workers learn of the end from the lead's
reply, say goodbye to every server, and the servers then assemble the final weights.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from mpirl import comm, exit_codes, signals
from mpirl.algos import A2C
from mpirl.evaluation import evaluate_policy
from mpirl.faults import Faults
from mpirl.logger import ProgressLogger
from mpirl.ps import (GRADIENT, SKIP, OptimizerRule, ParameterClient, ParameterServer,
                      ServerHooks, ServerStats, shard_bounds)
from mpirl.roles.checkpointing import Checkpointer
from mpirl.roles.setup import RunSetup
from mpirl.rundir import RunDir

# Report slots (worker -> every server, in the message header).
STEPS, EPISODES, RETURN_SUM, LENGTH_SUM = 0, 1, 2, 3
LOSS = 4  # loss, policy_loss, value_loss, entropy, grad_norm
REQUEST, EVAL_INDEX, EVAL_MEAN, EVAL_STD, NONFINITE = 9, 10, 11, 12, 13
LOSS_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")
# Reply slots (server -> worker). Only the lead fills STOP, CODE and EVALUATE.
STOP, CODE, EVALUATE, PROGRESS, PAUSE = 0, 1, 2, 3, 4


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
        return self.algo.gradient({k: r[k] for k in ("obs", "actions", "rewards", "dones")})


def make_rule(setup: RunSetup, values: np.ndarray) -> OptimizerRule:
    return OptimizerRule(values, setup.cfg.optimizer, setup.cfg.lr)


def slice_of(setup: RunSetup, index: int) -> tuple[int, int]:
    return shard_bounds(setup.n_params, setup.layout.learners)[index]


# ---------------------------------------------------------------------------------- workers
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


# ---------------------------------------------------------------------------------- servers
class A3CServerHooks(ServerHooks):
    """Every server: count env steps from the reports and follow the learning-rate
    schedule with them (every server sees every report, so all agree closely)."""

    def __init__(self, setup: RunSetup, rule: OptimizerRule, rank: int, env_steps: int = 0):
        self.cfg, self.rule = setup.cfg, rule
        self.env_steps = env_steps
        self.faults, self.messages = Faults(rank), 0

    def progress(self) -> float:
        return min(self.env_steps / self.cfg.total_steps, 1.0)

    def lr(self) -> float:
        if self.cfg.lr_schedule == "linear":
            return self.cfg.lr * max(1.0 - self.progress(), 0.0)
        return self.cfg.lr

    def on_message(self, server, worker, kind, report, reply) -> None:
        self.faults.strike(self.messages)
        self.messages += 1
        self.env_steps += int(report[STEPS])
        self.rule.set_lr(self.lr())
        reply[PROGRESS] = self.progress()
        reply[EVALUATE] = -1


class A3CLead(A3CServerHooks):
    """The lead server: progress rows, evaluation requests and the end of the run."""

    # what a checkpoint keeps of the lead's state (``counters``)
    COUNTERS = ("env_steps", "next_log", "next_eval", "evals", "last_eval", "target_hit",
                "skipped", "iterations", "time_s", "segment")

    def __init__(self, setup: RunSetup, rule: OptimizerRule, run_dir: RunDir,
                 counters: dict | None = None):
        super().__init__(setup, rule, 0)
        cfg = self.cfg
        self.setup, self.run_dir = setup, run_dir
        self.servers = setup.layout.learners
        self.outcome: int | None = None  # set once the run is to end
        self.next_log = cfg.log_every
        self.next_eval = cfg.eval_every if cfg.eval_every > 0 else None
        self.evals = 0
        self.last_eval: list | None = None
        self.target_hit: list | None = None
        self.skipped = 0
        self.iterations = 0  # the lead server's updates in earlier segments
        self.time_s = 0.0    # training time of earlier segments
        self.segment = 0
        if counters:
            for k in self.COUNTERS:
                setattr(self, k, counters[k])
            self.segment += 1
        self.logger = ProgressLogger(run_dir, enabled=True, quiet=cfg.quiet,
                                     tensorboard=cfg.tensorboard,
                                     resume_after=self.env_steps if counters else None,
                                     extra_columns=[f"updates_per_s/server{k}"
                                                    for k in range(self.servers)])
        self.start = time.perf_counter() - self.time_s
        self.eval_pending = False
        self.pending_row: dict = {}
        self.pausing = False  # a checkpoint is due: every worker is told to pause
        self.last_checkpoint = (self.iterations, time.perf_counter())
        self.window = np.zeros(3 + len(LOSS_KEYS) + 1)
        self.stats: list[ServerStats] = [ServerStats() for _ in range(self.servers)]
        self.at_last_row = [ServerStats() for _ in range(self.servers)]
        self.last_row = (self.env_steps, time.perf_counter())
        self.server = None

    def stop(self, outcome: int) -> None:
        if self.outcome is None:
            self.outcome = outcome

    def on_stats(self, server_index: int, stats: ServerStats) -> None:
        window_max = max(self.stats[server_index].window_max, stats.window_max)
        self.stats[server_index] = stats
        stats.window_max = window_max
        if stats.requests:
            self.stop(exit_codes.PREEMPTED)

    def on_message(self, server, worker, kind, report, reply) -> None:
        super().on_message(server, worker, kind, report, reply)
        cfg = self.cfg
        self.server = server
        self.window[:3] += report[EPISODES:EPISODES + 3]
        if report[NONFINITE]:
            self.skipped += 1
            if cfg.nonfinite == "stop":
                self.stop(exit_codes.DIVERGED)
        else:
            self.window[3:3 + len(LOSS_KEYS)] += report[LOSS:LOSS + len(LOSS_KEYS)]
            self.window[-1] += 1
        if report[REQUEST] or signals.requested():
            self.stop(exit_codes.PREEMPTED)
        row_now = False
        if report[EVAL_INDEX] >= 0:
            mean, std = float(report[EVAL_MEAN]), float(report[EVAL_STD])
            self.eval_pending = False
            self.last_eval = [self.env_steps, mean, std]
            self.pending_row.update(eval_return_mean=mean, eval_return_std=std)
            row_now = True
            if cfg.target_return is not None and mean >= cfg.target_return:
                self.target_hit = [self.env_steps, time.perf_counter() - self.start]
                self.stop(exit_codes.DONE)
        if self.env_steps >= cfg.total_steps:
            self.stop(exit_codes.DONE)
        if not self.pausing and self.outcome is None and self.checkpoint_due():
            self.pausing = True
        if self.pausing:  # until every worker has paused: no new stop or evaluation yet
            reply[PAUSE] = 1.0
        elif self.outcome is None and not self.eval_pending and self.next_eval is not None \
                and self.env_steps >= self.next_eval:
            reply[EVALUATE] = self.evals
            self.evals += 1
            self.eval_pending = True
            while self.next_eval <= self.env_steps:
                self.next_eval += cfg.eval_every
        if self.env_steps >= self.next_log and not self.eval_pending:
            row_now = True
        if row_now:
            self.write_row()
        if self.outcome is not None and not self.pausing:
            reply[STOP], reply[CODE] = 1.0, self.outcome

    def checkpoint_due(self) -> bool:
        cfg = self.cfg
        updates = self.iterations + self.server.stats.updates
        by_updates = cfg.checkpoint_every and \
            updates - self.last_checkpoint[0] >= cfg.checkpoint_every
        by_time = cfg.checkpoint_minutes > 0 and \
            time.perf_counter() - self.last_checkpoint[1] >= 60 * cfg.checkpoint_minutes
        return bool(by_updates or by_time)

    def checkpointed(self, stats: list[ServerStats]) -> None:
        """A checkpoint was taken (all workers paused): serving goes on."""
        self.pausing = False
        self.last_checkpoint = (self.iterations + stats[0].updates, time.perf_counter())

    def own_stats(self) -> None:
        if self.server is not None:
            own = self.server.stats
            self.stats[0] = ServerStats(**{**own.__dict__,
                                           "window_max": max(own.window_max,
                                                             self.stats[0].window_max)})
            own.window_max = 0

    def write_row(self, extra: dict | None = None) -> None:
        cfg = self.cfg
        while self.next_log <= self.env_steps:
            self.next_log += cfg.log_every
        self.own_stats()
        now = time.perf_counter()
        w, episodes, n = self.window, self.window[0], self.window[-1]
        row = {"env_steps": self.env_steps,
               "iterations": self.iterations + self.stats[0].updates,
               "time_s": round(now - self.start, 3),
               "sps": round((self.env_steps - self.last_row[0]) / max(now - self.last_row[1],
                                                                      1e-9), 1),
               "episodes": int(episodes),
               "episode_return_mean": w[1] / episodes if episodes else float("nan"),
               "episode_length_mean": w[2] / episodes if episodes else float("nan"),
               "lr": self.lr(), "skipped_updates": self.skipped}
        for i, k in enumerate(LOSS_KEYS):
            row[k] = w[3 + i] / n if n else float("nan")
        received = sum(s.updates + s.dropped - p.updates - p.dropped
                       for s, p in zip(self.stats, self.at_last_row))
        row["updates"] = sum(s.updates for s in self.stats)
        row["staleness_mean"] = (sum(s.staleness_sum - p.staleness_sum for s, p in
                                     zip(self.stats, self.at_last_row)) / received
                                 if received else float("nan"))
        row["staleness_max"] = max(s.window_max for s in self.stats)
        row["dropped_grads"] = sum(s.dropped for s in self.stats)
        for k, (s, p) in enumerate(zip(self.stats, self.at_last_row)):
            dt = s.seconds - p.seconds
            row[f"updates_per_s/server{k}"] = round((s.updates - p.updates) / dt, 1) \
                if dt > 0 else float("nan")
        row.update(self.pending_row)
        row.update(extra or {})
        self.logger.write(row)
        self.pending_row = {}
        self.window[:] = 0
        for s in self.stats:
            s.window_max = 0
        self.at_last_row = [ServerStats(**s.__dict__) for s in self.stats]
        self.last_row = (self.env_steps, now)

    def checkpoint_state(self, final: np.ndarray, stats: list[ServerStats]
                         ) -> tuple[dict, dict]:
        """(shared, meta) of the run's checkpoint: the assembled weights and the counters."""
        cfg, lay = self.cfg, self.setup.layout
        counters = {k: getattr(self, k) for k in self.COUNTERS}
        counters["iterations"] = self.iterations + stats[0].updates
        counters["time_s"] = time.perf_counter() - self.start
        shared = {"weights": torch.from_numpy(final.copy()), "counters": counters}
        meta = {"env_steps": self.env_steps, "iteration": counters["iterations"],
                "world_size": lay.size, "learners": lay.learners, "actors": lay.actors,
                "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": cfg.to_dict()}
        return shared, meta

    def finish(self, final: np.ndarray, stats: list[ServerStats], checkpoint) -> None:
        """The last row (with the final evaluation of the assembled weights), policy.pt and
        summary.json; or, after a stop signal or a non-finite gradient, the report."""
        cfg, setup = self.cfg, self.setup
        self.stats = stats
        model = setup.make_model("cpu")
        comm.FlatParameters(model).load_(torch.from_numpy(final))
        if self.outcome is not None and self.outcome != exit_codes.DONE:
            self.run_dir.save_policy(model)
            self._report_stop(checkpoint)
            return
        t = time.perf_counter()
        returns = evaluate_policy(model, cfg.env, cfg.eval_episodes, seed=cfg.seed,
                                  index=self.evals)
        eval_s = time.perf_counter() - t
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.write_row({"eval_return_mean": mean, "eval_return_std": std})
        self.run_dir.save_policy(model)
        wall = time.perf_counter() - self.start
        received = sum(s.updates + s.dropped for s in stats)
        hit = self.target_hit
        reached = hit is not None or (cfg.target_return is not None and mean >= cfg.target_return)
        summary = {
            "final_eval_return": mean, "final_eval_return_std": std,
            "env_steps": self.env_steps, "iterations": self.iterations + stats[0].updates,
            "wall_time_s": round(wall, 3), "eval_time_s": round(eval_s, 3),
            "sps": round(self.env_steps / wall, 1),
            "train_sps": round(self.env_steps / max(wall - eval_s, 1e-9), 1),
            "target_return": cfg.target_return, "target_reached": reached,
            "target_reached_env_steps": hit[0] if hit else (self.env_steps if reached else None),
            "target_reached_time_s": round(hit[1], 3) if hit else (round(wall, 3) if reached
                                                                   else None),
            "skipped_updates": self.skipped, "resumed": self.segment,
            "world_size": setup.layout.size, "servers": setup.layout.learners,
            "workers": setup.layout.actors, "device": "cpu",
            "updates": sum(s.updates for s in stats),
            "staleness_mean": sum(s.staleness_sum for s in stats) / received if received
            else None,
            "staleness_max": max(s.staleness_max for s in stats),
            "dropped_grads": sum(s.dropped for s in stats),
            "server_updates_per_s": [round(s.updates / max(s.seconds, 1e-9), 1) for s in stats],
            # the share of each server's time spent on messages rather than waiting for them
            "server_busy": [round(s.busy_s / max(s.seconds, 1e-9), 3) for s in stats],
        }
        self.run_dir.write_summary(summary)
        self.logger.final(summary)
        self.logger.close()

    def _report_stop(self, checkpoint) -> None:
        if self.outcome == exit_codes.PREEMPTED:
            where = f"checkpoint {checkpoint}" if checkpoint else "NO checkpoint could be written"
            sys.stderr.write(
                f"mpirl: stopped by a stop signal (SIGTERM/SIGUSR1) at env step "
                f"{self.env_steps:,}; {where}. Continue with: python -m mpirl.train --resume "
                f"{self.run_dir.path}\n")
        else:
            sys.stderr.write(
                f"mpirl: error: a worker's loss or gradient became NaN/Inf after env step "
                f"{self.env_steps:,}; it was not applied and training stopped. Train with a "
                f"lower --lr, or with --nonfinite skip to skip such gradients\n")
        sys.stderr.flush()
        self.logger.close()


def run_server(setup: RunSetup, comms: comm.RoleComms, run_dir: RunDir,
               checkpointer: Checkpointer, resume: dict | None = None) -> int:
    """Serve this rank's slice until every worker is done, then assemble the final weights on
    the lead and join the checkpoint; returns the run's exit code.

    A resumed server continues from its own slice, optimizer statistics and version (same
    layout), or else slices the saved weights afresh with new statistics."""
    lay = setup.layout
    index = comms.rank
    lo, hi = slice_of(setup, index)
    own = (resume or {}).get("own")
    shared = (resume or {}).get("shared")
    if own is not None:
        values = np.array(own["values"], dtype=np.float32)
    else:
        full = shared["weights"].numpy() if shared is not None else \
            comm.FlatParameters(setup.make_model("cpu")).vector.numpy()
        values = np.array(full[lo:hi], dtype=np.float32)
    rule = make_rule(setup, values)
    if own is not None:
        rule.optimizer.load_state_dict(own["optimizer"])
    counters = shared["counters"] if shared is not None else None
    hooks = (A3CLead(setup, rule, run_dir, counters) if index == 0 else
             A3CServerHooks(setup, rule, index, counters["env_steps"] if counters else 0))
    server = ParameterServer(comms.world, index, list(range(lay.learners)),
                             list(range(lay.learners, lay.size)), values, rule,
                             setup.cfg.max_staleness, hooks,
                             version=own["version"] if own is not None else 0)
    while True:
        stats = server.serve()
        # the servers alone: assemble the weights and counters on the lead
        parts = comm.gather_to_root(comms.learners, (values, stats),
                                    what="the other servers to finish")
        code = np.zeros(1)
        if parts is not None:
            final, all_stats = np.concatenate([p[0] for p in parts]), [p[1] for p in parts]
            code[0] = hooks.outcome if hooks.outcome is not None else exit_codes.DONE
        comm.broadcast_(comms.learners, code, root=0, what="the lead server's exit code")
        # the workers join this collective too: at every pause, and at the end unless a
        # non-finite gradient ended the run
        if server.paused or int(code[0]) != exit_codes.DIVERGED:
            ckpt = meta = None
            if parts is not None:
                ckpt, meta = hooks.checkpoint_state(final, all_stats)
            mine = {"role": "server", "values": values.copy(), "optimizer": rule.state_dict(),
                    "version": server.version}
            result = checkpointer.save(mine, ckpt, meta)
            if parts is not None:
                hooks.logger.checkpoint(result)
        if not server.paused:
            break
        if parts is not None:
            hooks.checkpointed(all_stats)
    if parts is not None:
        hooks.finish(final, all_stats, checkpointer.last)
    return int(code[0])


def describe(setup: RunSetup) -> str:
    lay, cfg = setup.layout, setup.cfg
    sizes = [hi - lo for lo, hi in shard_bounds(setup.n_params, lay.learners)]
    return (f"mpirl: a3c on {cfg.env}: {lay.size} rank(s): {lay.learners} parameter "
            f"server(s), {lay.actors} worker(s); {cfg.envs_per_actor} envs x {cfg.n_steps} "
            f"steps per gradient; model {setup.n_params:,} parameters in slices of "
            f"{min(sizes):,}-{max(sizes):,}; "
            f"max staleness {cfg.max_staleness or 'unlimited'}")

