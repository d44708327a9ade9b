"""Progress output of a run: progress.csv, TensorBoard events, and terminal lines.

Only the lead learner writes (``enabled``); on every other rank the logger does nothing, so
algorithms and roles never test the rank themselves. On an interactive terminal the progress
rows become one live line (tqdm: env steps, steps per second, time left, the latest returns);
in batch logs (no terminal) they stay plain rows.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import threading
from typing import Sequence

from mpirl.files.atomic import NO_SPACE, DiskFull, space_needed, write_atomically
from mpirl.files.rundir import RunDir

COLUMNS = ["env_steps", "iterations", "time_s", "sps", "episodes", "episode_return_mean",
           "episode_length_mean", "loss", "policy_loss", "value_loss", "entropy", "grad_norm",
           "q_mean", "q_max", "td_abs", "lr", "skipped_updates", "updates", "replay_ratio",
           "replay_fill", "updates_per_s", "staleness_mean", "staleness_max", "dropped_grads",
           "eval_return_mean", "eval_return_std",
           "learner_wait_rollouts", "learner_wait_learners", "learner_gradient",
           "actor_wait_weights"]


def _rows_up_to(path, env_steps: int, columns: list[str]) -> list[dict]:
    """The rows of an existing progress.csv up to and including ``env_steps``."""
    try:
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if k in columns} for row in csv.DictReader(f)
                    if row.get("env_steps") and int(row["env_steps"]) <= env_steps]
    except FileNotFoundError:
        return []


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _route_full_disk_of_threads(logger: "ProgressLogger") -> None:
    """TensorBoard writes from a thread of its own, which would die of a full disk with a
    traceback of its own: hand the error to the logger instead, which stops the run at its
    next row with one clear message."""
    previous = threading.excepthook

    def hook(args) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in NO_SPACE:
            logger._tb_full = args.exc_value
        else:
            previous(args)

    threading.excepthook = hook


class ProgressLogger:
    """``resume_after``: continue a resumed run's files, dropping what the interrupted run
    wrote after its checkpoint at that env step (those rows will be written again).
    ``extra_columns`` follow the standard ones (e.g. one update rate per parameter server)."""

    def __init__(self, run_dir: RunDir, enabled: bool, quiet: bool = False,
                 tensorboard: bool = True, resume_after: int | None = None,
                 extra_columns: Sequence[str] = (), total_steps: int | None = None,
                 live: bool | None = None, wandb: tuple[dict, str] | None = None):
        self.enabled, self.quiet = enabled, quiet
        self.columns = COLUMNS + list(extra_columns)
        self._file = self._csv = self._tb = None
        # the live line: on a terminal (``live`` None: if stdout is one), created at the first row
        self._live = (enabled and not quiet and total_steps is not None and
                      (sys.stdout.isatty() if live is None else live))
        self._total, self._start_steps = total_steps, resume_after or 0
        self._bar = None
        self._wandb = None
        if enabled and wandb is not None:  # (config, project)
            from mpirl.files.wandb_log import WandbRun
            self._wandb = WandbRun(run_dir.path, *wandb)
        if not enabled:
            return
        path = self._path = run_dir.path / "progress.csv"
        kept = _rows_up_to(path, resume_after, self.columns) if resume_after is not None else []
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        write_atomically(path, text.getvalue().encode())  # a crash here loses no row
        self._file = open(path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            purge = None if resume_after is None else resume_after + 1
            self._tb = SummaryWriter(log_dir=str(run_dir.path / "tb"), purge_step=purge)
            self._tb_full: OSError | None = None
            _route_full_disk_of_threads(self)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        if self._tb is not None and self._tb_full is not None:
            raise DiskFull(self._path.parent / "tb", self._tb_full)
        with space_needed(self._path):
            self._csv.writerow({k: _fmt(row.get(k)) for k in self.columns})
            self._file.flush()
        if self._tb is not None:
            step = row["env_steps"]
            # the writer thread's own error may come back here, from the next add_scalar
            with space_needed(self._path.parent / "tb"):
                for k, v in row.items():
                    if k != "env_steps" and isinstance(v, (int, float)) and not math.isnan(v):
                        self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(row, row["env_steps"])
        if self._live:
            self._show_live(row)
        elif not self.quiet:
            ret = row.get("episode_return_mean", float("nan"))
            line = (f"steps {row['env_steps']:>10,d}  sps {row['sps']:>9,.0f}  "
                    f"train return {ret:8.2f}")
            for key, label in (("loss", "loss"), ("value_loss", "critic loss")):
                if key in row:  # actor-critics on replay (SAC...) report their critics' loss
                    line += f"  {label} {row[key]:8.4f}"
                    break
            if "eval_return_mean" in row:
                line += f"  eval return {row['eval_return_mean']:8.2f}"
            print(line, flush=True)

    def _show_live(self, row: dict) -> None:
        if self._bar is None:
            from tqdm import tqdm  # only on a terminal
            try:  # a terminal that reports no size gets 100 x 24 (tqdm would show nothing)
                width = os.get_terminal_size(sys.stdout.fileno()).columns
            except OSError:
                width = 0
            self._bar = tqdm(total=self._total, initial=self._start_steps, unit=" steps",
                             unit_scale=True, ncols=width or 100, nrows=None if width else 24,
                             dynamic_ncols=width > 0, file=sys.stdout)
            self._evaluated = float("nan")
        if "eval_return_mean" in row:
            self._evaluated = row["eval_return_mean"]
        self._bar.set_postfix_str(f"return {row.get('episode_return_mean', float('nan')):.2f}"
                                  f"  eval {self._evaluated:.2f}", refresh=False)
        self._bar.update(max(row["env_steps"] - self._bar.n, 0))

    def _say(self, text: str, file=None) -> None:
        """A line on the terminal that leaves the live line below it."""
        if self._bar is not None and file is None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text, file=file or sys.stdout, flush=True)

    def end_live(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def timing(self, table: str) -> None:
        """The end-of-run time breakdown (lead only; printed unless quiet)."""
        if self.enabled and not self.quiet:
            self.end_live()
            print(table, flush=True)

    def checkpoint(self, result) -> None:
        """Report a checkpoint: (path, bytes, seconds) or an error text (lead only)."""
        if not self.enabled or result is None:
            return
        if isinstance(result, str):
            self._say(f"mpirl: warning: {result}", file=sys.stderr)
        elif not self.quiet:
            path, size, secs = result
            self._say(f"checkpoint {path} ({size / 2**20:.2f} MiB, {secs:.2f} s)")

    def write_eval(self, env_steps: int, mean: float, std: float) -> None:
        """A row holding only a (final) evaluation."""
        if not self.enabled:
            return
        with space_needed(self._path):
            self._csv.writerow({k: _fmt(v) for k, v in
                                {"env_steps": env_steps, "eval_return_mean": mean,
                                 "eval_return_std": std}.items()})
            self._file.flush()
        if self._tb is not None:
            with space_needed(self._path.parent / "tb"):
                self._tb.add_scalar("eval_return_mean", mean, env_steps)
        if self._wandb is not None:
            self._wandb.log({"eval_return_mean": mean, "eval_return_std": std}, env_steps)

    def video(self, path, env_steps: int) -> None:
        """A video recorded at an evaluation (lead only)."""
        if self._wandb is not None:
            self._wandb.video(path, env_steps)

    def final(self, summary: dict) -> None:
        self.end_live()
        if not self.enabled or self.quiet:
            return
        run, episodes = self._path.parent, summary["eval_episodes"]
        reached = ""
        if summary.get("target_return") is not None:
            reached = (f"; target {summary['target_return']:g} reached at "
                       f"{summary['target_reached_env_steps']:,} steps, "
                       f"{summary['target_reached_time_s']:.1f} s (by one evaluation of "
                       f"{episodes} episodes, which can be lucky: python -m mpirl.evaluate "
                       f"{run} --episodes 100 measures the final policy)"
                       if summary["target_reached"] else
                       f"; target {summary['target_return']:g} NOT reached")
        print(f"done: {summary['env_steps']:,} env steps in {summary['wall_time_s']:.1f} s "
              f"({summary['sps']:,.0f} steps/s); final evaluation return "
              f"{summary['final_eval_return']:.2f} +- {summary['final_eval_return_std']:.2f} "
              f"over {episodes} episodes{reached}", file=sys.stdout)
        print(f"run directory: {run}", file=sys.stdout, flush=True)

    def close(self) -> None:
        self.end_live()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # a full disk, reported already
                pass
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError:  # a full disk, reported already
                pass
