"""The run's records, the same for every execution model: counters, the evaluation, log,
checkpoint and target schedules, the learning-rate schedule, progress rows, the messages at a
stop signal or a non-finite update, and summary.json.

The lead rank (the lead learner, or the lead parameter server) writes; the execution model
decides when each record is due through this object and does the communication itself.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time
from typing import Sequence

import numpy as np

from mpirl.files.logger import COLUMNS, ProgressLogger
from mpirl.files.rundir import RunDir

# a progress window: finished episodes, their return sum, their length sum; one sum per
# statistic of the updates; the number of updates summed
EPISODE_SLOTS = 3


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dataclasses.dataclass
class Counters:
    """Where the run stands; saved in checkpoints."""

    iteration: int = 0            # updates done (the lead server's, on parameter servers)
    env_steps: int = 0
    time_s: float = 0.0           # training time of the segments before this one
    eval_time_s: float = 0.0
    next_log: int = 0
    next_eval: int | None = None
    evals: int = 0
    last_eval: list | None = None   # [env_steps, mean, std]
    target_hit: list | None = None  # [env_steps, time_s]
    skipped_updates: int = 0
    segment: int = 0              # 0 for a fresh run, +1 per resume
    allreduce_bytes: int = 0      # bytes each learner put into the learners' allreduces
    eval_pending: bool = False    # a stop came before this iteration's evaluation was done


def learning_rate(cfg, env_steps: int, planned_steps: int) -> float:
    """--lr under --lr-schedule: linear decays to 0 at ``planned_steps``."""
    if cfg.lr_schedule == "linear":
        return cfg.lr * max(0.0, 1.0 - env_steps / planned_steps)
    return cfg.lr


def episode_columns(episodes: float, return_sum: float, length_sum: float) -> dict:
    """A progress row's episode columns from a window's finished-episode sums."""
    nan = float("nan")
    return {"episodes": int(episodes),
            "episode_return_mean": return_sum / episodes if episodes else nan,
            "episode_length_mean": length_sum / episodes if episodes else nan}


class RunProgress:
    """``stat_keys``: the statistics each update reports (averaged over the updates of a row);
    ``columns``: further progress.csv columns the algorithm or execution model writes.
    ``counters``: a checkpoint's, to continue from (``segment`` is the resume count)."""

    def __init__(self, cfg, run_dir: RunDir, lead: bool, stat_keys: Sequence[str],
                 columns: Sequence[str] = (), counters: dict | None = None, segment: int = 0):
        self.cfg, self.run_dir, self.lead = cfg, run_dir, lead
        self.stat_keys = tuple(stat_keys)
        resumed = counters is not None
        self.c = Counters(**counters) if resumed else Counters(
            next_log=cfg.log_every, next_eval=cfg.eval_every if cfg.eval_every > 0 else None)
        if resumed:
            self.c.segment = segment
        self.window = np.zeros(EPISODE_SLOTS + len(self.stat_keys) + 1)
        self.planned_steps = cfg.total_steps
        extra = [k for k in self.stat_keys if k not in COLUMNS] + list(columns)
        self.logger = ProgressLogger(run_dir, enabled=lead, quiet=cfg.quiet,
                                     tensorboard=cfg.tensorboard,
                                     resume_after=self.c.env_steps if resumed else None,
                                     extra_columns=extra, total_steps=cfg.total_steps,
                                     wandb=((cfg.to_dict(), cfg.wandb_project)
                                            if getattr(cfg, "wandb", False) else None))
        self._start = time.perf_counter()  # of this segment
        self._last_row = (self.c.env_steps, self._start)
        # the update count at the last checkpoint (the schedule counts from it), and the
        # update a checkpoint was last written at (-1: none in this run yet)
        self._checkpoint_base = self.c.iteration
        self.checkpointed_at = self.c.iteration if resumed else -1
        self._checkpoint_time = self._start

    # ------------------------------------------------------------------ clocks
    def elapsed(self) -> float:
        """Training time so far, earlier segments included."""
        return self.c.time_s + time.perf_counter() - self._start

    def begin(self) -> None:
        """Training starts now: rates count from here."""
        self._last_row = (self.c.env_steps, time.perf_counter())

    def since_row(self) -> float:
        return time.perf_counter() - self._last_row[1]

    def lr(self) -> float:
        """The learning rate at the current env step."""
        return learning_rate(self.cfg, self.c.env_steps, self.planned_steps)

    # ------------------------------------------------------------------ schedules
    def evaluation_due(self, last: bool = False) -> bool:
        """Whether an evaluation is due at this env step (``last``: the run's last update,
        which always ends with one); if so, the schedule moves past this step."""
        c = self.c
        due = last or (c.next_eval is not None and c.env_steps >= c.next_eval)
        while due and c.next_eval is not None and c.next_eval <= c.env_steps:
            c.next_eval += self.cfg.eval_every
        return due

    def next_eval_index(self) -> int:
        """The index of the next evaluation (each gets its own start states)."""
        index, self.c.evals = self.c.evals, self.c.evals + 1
        return index

    def log_due(self) -> bool:
        return self.c.env_steps >= self.c.next_log

    def record_eval(self, mean: float, std: float) -> bool:
        """An evaluation at this env step; returns whether it reached --target-return."""
        c = self.c
        c.last_eval = [c.env_steps, mean, std]
        if self.cfg.target_return is not None and mean >= self.cfg.target_return:
            c.target_hit = [c.env_steps, self.elapsed()]
            return True
        return False

    def checkpoint_due(self, count: int) -> tuple[bool, bool]:
        """(due by --checkpoint-every, due by --checkpoint-minutes) at this count of what
        --checkpoint-every counts: a multiple of it was passed since the last checkpoint."""
        cfg = self.cfg
        every = cfg.checkpoint_every
        by_updates = bool(every) and count // every > self._checkpoint_base // every
        by_time = cfg.checkpoint_minutes > 0 and \
            time.perf_counter() - self._checkpoint_time >= 60 * cfg.checkpoint_minutes
        return by_updates, by_time

    def count_checkpoints_from(self, count: int) -> None:
        """Where --checkpoint-every counts from, when it counts something other than the
        iterations (e.g. a resumed trainer's updates)."""
        self._checkpoint_base = count

    def checkpointed(self, iteration: int, count: int | None = None) -> None:
        """A checkpoint was written at ``iteration``; ``count``: what --checkpoint-every
        counts, if not iterations."""
        self.checkpointed_at = iteration
        self._checkpoint_base = iteration if count is None else count
        self._checkpoint_time = time.perf_counter()

    # ------------------------------------------------------------------ the window and rows
    def restore_window(self, saved: np.ndarray) -> None:
        """A checkpoint's window. One written before the trainer gained statistics (new ones
        go at the end of ``stat_keys``) is shorter: those start at zero."""
        saved = np.asarray(saved)
        self.window[:] = 0
        self.window[:len(saved) - 1] = saved[:-1]
        self.window[-1] = saved[-1]

    def add_episodes(self, stats: np.ndarray) -> None:
        """A message's episode slots: finished episodes, their return sum, their length sum."""
        self.window[:EPISODE_SLOTS] += stats

    def add_update(self, stats) -> None:
        """One update's statistics: a dict by ``stat_keys``, or their values in order."""
        values = [stats[k] for k in self.stat_keys] if isinstance(stats, dict) else stats
        self.window[EPISODE_SLOTS:-1] += values
        self.window[-1] += 1

    def row(self, window: np.ndarray, iteration: int, lr: float, extra: dict) -> dict:
        """The progress row at this env step from a window (this rank's, or summed over the
        learners), the learning rate of its last update, then ``extra``; the window starts
        afresh. Lead only writes it."""
        c = self.c
        while c.next_log <= c.env_steps:
            c.next_log += self.cfg.log_every
        now = time.perf_counter()
        steps, then = self._last_row
        updates = window[-1]
        row = {"env_steps": c.env_steps, "iterations": iteration,
               "time_s": round(self.elapsed(), 3),
               "sps": round((c.env_steps - steps) / max(now - then, 1e-9), 1),
               **episode_columns(*window[:EPISODE_SLOTS])}
        for i, k in enumerate(self.stat_keys):
            row[k] = window[EPISODE_SLOTS + i] / updates if updates else float("nan")
        row["lr"] = lr
        row["skipped_updates"] = c.skipped_updates
        row.update(extra)
        self._last_row = (c.env_steps, now)
        self.window[:] = 0
        self.logger.write(row)
        return row

    # ------------------------------------------------------------------ checkpoints
    def counters_state(self, iteration: int) -> dict:
        """The counters a checkpoint saves, at update ``iteration``."""
        return dataclasses.asdict(dataclasses.replace(self.c, iteration=iteration,
                                                      time_s=self.elapsed()))

    def checkpoint_meta(self, layout, iteration: int) -> dict:
        """A checkpoint's metadata: what resume checks the run and its layout against."""
        return {"env_steps": self.c.env_steps, "iteration": iteration,
                "world_size": layout.size, "learners": layout.learners,
                "actors": layout.actors, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": self.cfg.to_dict(), "state_layout": STATE_LAYOUT}

    # ------------------------------------------------------------------ the end
    def report_stopped(self, checkpoint) -> None:
        """After a stop signal (lead only)."""
        if not self.lead:
            return
        self.logger.end_live()
        where = f"checkpoint {checkpoint}" if checkpoint else "NO checkpoint could be written"
        sys.stderr.write(
            f"mpirl: stopped by a stop signal (SIGTERM/SIGUSR1) at env step "
            f"{self.c.env_steps:,}; {where}. Continue with: python -m mpirl.train "
            f"--resume {self.run_dir.path}\n")
        sys.stderr.flush()

    def report_diverged(self, where: str, checkpoint) -> None:
        """After a non-finite loss or gradient with --nonfinite stop (lead only); ``where``
        names it, e.g. "in update 26"."""
        if not self.lead:
            return
        self.logger.end_live()
        sys.stderr.write(
            f"mpirl: error: the loss or gradient became NaN/Inf {where} (after env step "
            f"{self.c.env_steps:,}); the update was not applied and training stopped. Newest "
            f"good checkpoint: {checkpoint or 'none yet'}. Resume from it with --resume "
            f"{self.run_dir.path} and e.g. a lower --lr (with --override lr), or train with "
            f"--nonfinite skip to skip such updates\n")
        sys.stderr.flush()

    def summary(self, final: tuple[float, float], iteration: int, extra: dict) -> dict:
        """summary.json: the final evaluation (mean, std) and the run's figures, then
        ``extra`` (the layout, the algorithm's figures). A final evaluation that reaches
        --target-return counts, at the end of the run."""
        cfg, c = self.cfg, self.c
        mean, std = final
        wall_s, eval_s = self.elapsed(), c.eval_time_s
        target_hit = c.target_hit
        reached = target_hit is not None or (cfg.target_return is not None
                                             and mean >= cfg.target_return)
        if reached and target_hit is None:
            target_hit = [c.env_steps, wall_s]
        return {
            "final_eval_return": mean,
            "final_eval_return_std": std,
            "eval_episodes": cfg.eval_episodes,
            "env_steps": c.env_steps,
            "iterations": iteration,
            "wall_time_s": round(wall_s, 3),
            "eval_time_s": round(eval_s, 3),
            "sps": round(c.env_steps / wall_s, 1),
            "train_sps": round(c.env_steps / max(wall_s - eval_s, 1e-9), 1),
            "target_return": cfg.target_return,
            "target_reached": reached,
            "target_reached_env_steps": target_hit[0] if reached else None,
            "target_reached_time_s": round(target_hit[1], 3) if reached else None,
            "skipped_updates": c.skipped_updates,
            "resumed": c.segment,
            "lead_peak_rss_mb": peak_rss_mb(),
            **extra,
        }

    def finish(self, policy, summary: dict) -> None:
        """The end of a finished run (lead only): policy.pt, summary.json, the last line."""
        if not self.lead:
            return
        self.run_dir.save_policy(policy)
        self.run_dir.write_summary(summary)
        self.logger.final(summary)

    def close(self) -> None:
        self.logger.close()


# Checkpoints of this layout keep the trainer's optimizer inside its state and the weight
# publication apart (``mpirl.files.resume.upgrade`` reads the earlier one).
STATE_LAYOUT = 2
