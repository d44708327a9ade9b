"""What A3C servers make of the workers' reports: every server follows the learning-rate
schedule; the lead also writes progress rows, hands out evaluations and checkpoints, and
decides when the run ends."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from mpirl import comm
from mpirl.runtime import exit_codes, signals
from mpirl.acting.evaluation import evaluate_policy
from mpirl.runtime.faults import Faults
from mpirl.files.logger import ProgressLogger
from mpirl.ps import OptimizerRule, ServerHooks, ServerStats
from mpirl.execution.server.protocol import (CODE, EPISODES, EVAL_INDEX, EVAL_MEAN, EVAL_STD, EVALUATE,
                                      LOSS, LOSS_KEYS, NONFINITE, PAUSE, PROGRESS, REQUEST,
                                      STEPS, STOP)
from mpirl.execution.report import checkpoint_meta, episode_columns, run_summary
from mpirl.execution.setup import RunSetup
from mpirl.files.rundir import RunDir


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

    def write_row(self, extra: dict | None = None) -> None:
        cfg = self.cfg
        while self.next_log <= self.env_steps:
            self.next_log += cfg.log_every
        if self.server is not None:  # the lead's own counters, live
            self.stats[0] = self.server.stats
        now = time.perf_counter()
        w, n = self.window, self.window[-1]
        row = {"env_steps": self.env_steps,
               "iterations": self.iterations + self.stats[0].updates,
               "time_s": round(now - self.start, 3),
               "sps": round((self.env_steps - self.last_row[0]) / max(now - self.last_row[1],
                                                                      1e-9), 1),
               **episode_columns(*w[:3]), "lr": self.lr(), "skipped_updates": self.skipped}
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
        return shared, checkpoint_meta(cfg, lay, self.env_steps, counters["iterations"])

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
        lay = setup.layout
        summary = {
            **run_summary(cfg, (mean, std), self.env_steps, self.iterations + stats[0].updates,
                          wall, eval_s, self.target_hit, self.skipped, self.segment),
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
