"""What the parameter servers make of the workers' reports: every server follows the
learning-rate schedule; the lead also writes progress rows, hands out evaluations and
checkpoints, and decides when the run ends (through the run's ``RunProgress``)."""
from __future__ import annotations

import time

import numpy as np
import torch

from mpirl import comm
from mpirl.acting.envs import env_ref
from mpirl.acting.evaluation import evaluate_policy
from mpirl.execution.progress import RunProgress, learning_rate
from mpirl.execution.server.protocol import (CODE, EPISODES, EVAL_INDEX, EVAL_MEAN, EVAL_STD,
                                             EVALUATE, NONFINITE, PAUSE, PROGRESS, REQUEST, STATS,
                                             STEPS, STOP)
from mpirl.execution.setup import RunSetup
from mpirl.files.rundir import RunDir
from mpirl.ps import OptimizerRule, ServerHooks, ServerStats
from mpirl.runtime import exit_codes, signals
from mpirl.runtime.faults import Faults


class Follower(ServerHooks):
    """Every server: count env steps from the reports and follow the learning-rate schedule
    with them (every server sees every report, so all agree closely)."""

    def __init__(self, setup: RunSetup, rule: OptimizerRule, rank: int, env_steps: int = 0):
        self.cfg, self.rule = setup.cfg, rule
        self.env_steps = env_steps
        self.faults, self.messages = Faults(rank), 0

    def progress(self) -> float:
        return min(self.env_steps / self.cfg.total_steps, 1.0)

    def lr(self) -> float:
        return learning_rate(self.cfg, self.env_steps, self.cfg.total_steps)

    def on_message(self, server, worker, kind, report, reply) -> None:
        self.faults.strike(self.messages)
        self.messages += 1
        self.env_steps += int(report[STEPS])
        self.rule.set_lr(self.lr())
        reply[PROGRESS] = self.progress()
        reply[EVALUATE] = -1


class Lead(Follower):
    """The lead server: progress rows, evaluation requests and the end of the run.
    ``stat_keys``: the statistics in the workers' reports."""

    def __init__(self, setup: RunSetup, rule: OptimizerRule, run_dir: RunDir,
                 stat_keys: tuple[str, ...], counters: dict | None = None, segment: int = 0):
        self.setup, self.servers = setup, setup.layout.learners
        self.run = RunProgress(setup.cfg, run_dir, lead=True, stat_keys=stat_keys,
                               columns=[f"updates_per_s/server{k}" for k in
                                        range(self.servers)],
                               counters=counters, segment=segment)
        super().__init__(setup, rule, 0, self.run.c.env_steps)
        self.stat_keys = stat_keys
        self.base = self.run.c.iteration  # the lead server's updates in earlier segments
        self.outcome: int | None = None   # set once the run is to end
        self.eval_pending = False
        self.pending_row: dict = {}
        self.pausing = False  # a checkpoint is due: every worker is told to pause
        self.stats: list[ServerStats] = [ServerStats() for _ in range(self.servers)]
        self.at_last_row = [ServerStats() for _ in range(self.servers)]
        self.server = None
        self.run.begin()

    @property
    def env_steps(self) -> int:
        return self.run.c.env_steps

    @env_steps.setter
    def env_steps(self, value: int) -> None:
        self.run.c.env_steps = value

    def updates(self) -> int:
        """The lead server's updates, earlier segments included."""
        return self.base + (self.server.stats.updates if self.server is not None else 0)

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
        run, cfg = self.run, self.cfg
        self.server = server
        run.add_episodes(report[EPISODES:EPISODES + 3])
        if report[NONFINITE]:
            run.c.skipped_updates += 1
            if cfg.nonfinite == "stop":
                self.stop(exit_codes.DIVERGED)
        else:
            run.add_update(report[STATS:STATS + len(self.stat_keys)])
        if report[REQUEST] or signals.requested():
            self.stop(exit_codes.PREEMPTED)
        row_now = False
        if report[EVAL_INDEX] >= 0:
            mean, std = float(report[EVAL_MEAN]), float(report[EVAL_STD])
            self.eval_pending = False
            self.pending_row.update(eval_return_mean=mean, eval_return_std=std)
            row_now = True
            if run.record_eval(mean, std):
                self.stop(exit_codes.DONE)
        if self.env_steps >= cfg.total_steps:
            self.stop(exit_codes.DONE)
        if not self.pausing and self.outcome is None and any(run.checkpoint_due(self.updates())):
            self.pausing = True
        if self.pausing:  # until every worker has paused: no new stop or evaluation yet
            reply[PAUSE] = 1.0
        elif self.outcome is None and not self.eval_pending and run.evaluation_due():
            reply[EVALUATE] = run.next_eval_index()
            self.eval_pending = True
        if run.log_due() and not self.eval_pending:
            row_now = True
        if row_now:
            self.write_row()
        if self.outcome is not None and not self.pausing:
            reply[STOP], reply[CODE] = 1.0, self.outcome

    def checkpointed(self, stats: list[ServerStats]) -> None:
        """A checkpoint was taken (all workers paused): serving goes on."""
        self.pausing = False
        self.run.checkpointed(self.base + stats[0].updates)

    def write_row(self, extra: dict | None = None) -> None:
        if self.server is not None:  # the lead's own counters, live
            self.stats[0] = self.server.stats
        row = {"updates": sum(s.updates for s in self.stats)}
        received = sum(s.updates + s.dropped - p.updates - p.dropped
                       for s, p in zip(self.stats, self.at_last_row))
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
        self.run.row(self.run.window, self.base + self.stats[0].updates, self.lr(), row)
        self.pending_row = {}
        for s in self.stats:
            s.window_max = 0
        self.at_last_row = [ServerStats(**s.__dict__) for s in self.stats]

    def checkpoint_state(self, final: np.ndarray, stats: list[ServerStats]
                         ) -> tuple[dict, dict]:
        """(shared, meta) of the run's checkpoint: the assembled weights and the counters."""
        iteration = self.base + stats[0].updates
        shared = {"weights": torch.from_numpy(final.copy()),
                  "counters": self.run.counters_state(iteration)}
        return shared, self.run.checkpoint_meta(self.setup.layout, iteration)

    def finish(self, final: np.ndarray, stats: list[ServerStats], checkpoint) -> None:
        """The last row (with the final evaluation of the assembled weights), policy.pt and
        summary.json; or, after a stop signal or a non-finite gradient, the report."""
        cfg, setup, run = self.cfg, self.setup, self.run
        self.stats = stats
        policy = setup.make_policy("cpu")
        comm.FlatParameters(policy).load_(torch.from_numpy(final))
        if self.outcome is not None and self.outcome != exit_codes.DONE:
            run.run_dir.save_policy(policy)
            if self.outcome == exit_codes.PREEMPTED:
                run.report_stopped(checkpoint)
            else:
                run.report_diverged("in a worker's gradient", checkpoint)
            run.close()
            return
        t = time.perf_counter()
        returns = evaluate_policy(policy, env_ref(cfg), cfg.eval_episodes, seed=cfg.seed,
                                  index=run.c.evals)
        run.c.eval_time_s += time.perf_counter() - t
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.write_row({"eval_return_mean": mean, "eval_return_std": std})
        received = sum(s.updates + s.dropped for s in stats)
        lay = setup.layout
        summary = run.summary((mean, std), self.base + stats[0].updates, {
            "world_size": lay.size, "servers": lay.learners, "workers": lay.actors,
            "device": "cpu",
            "updates": sum(s.updates for s in stats),
            "staleness_mean": sum(s.staleness_sum for s in stats) / received if received
            else None,
            "staleness_max": max(s.staleness_max for s in stats),
            "dropped_grads": sum(s.dropped for s in stats),
            "server_updates_per_s": [round(s.updates / max(s.seconds, 1e-9), 1) for s in stats],
            # the share of each server's time spent on messages rather than waiting for them
            "server_busy": [round(s.busy_s / max(s.seconds, 1e-9), 3) for s in stats],
        })
        run.finish(policy, summary)
        run.close()
