"""Progress output of a run: progress.csv, TensorBoard events, and terminal lines.

Only the lead learner writes (``enabled``); on every other rank the logger does nothing, so
algorithms and roles never test the rank themselves.
"""
from __future__ import annotations

import csv
import math
import sys

from mpirl.rundir import RunDir

COLUMNS = ["env_steps", "iterations", "time_s", "sps", "episodes", "episode_return_mean",
           "episode_length_mean", "loss", "policy_loss", "value_loss", "entropy", "grad_norm",
           "lr", "eval_return_mean", "eval_return_std"]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


class ProgressLogger:
    def __init__(self, run_dir: RunDir, enabled: bool, quiet: bool = False,
                 tensorboard: bool = True):
        self.enabled, self.quiet = enabled, quiet
        self._file = self._csv = self._tb = None
        if not enabled:
            return
        self._file = open(run_dir.path / "progress.csv", "w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        self._csv.writeheader()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(log_dir=str(run_dir.path / "tb"))

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self._csv.writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        self._file.flush()
        if self._tb is not None:
            step = row["env_steps"]
            for k, v in row.items():
                if k != "env_steps" and isinstance(v, (int, float)) and not math.isnan(v):
                    self._tb.add_scalar(k, v, step)
        if not self.quiet:
            ret = row.get("episode_return_mean", float("nan"))
            line = (f"steps {row['env_steps']:>10,d}  sps {row['sps']:>9,.0f}  "
                    f"return {ret:8.2f}  loss {row.get('loss', float('nan')):8.4f}")
            if "eval_return_mean" in row:
                line += f"  eval {row['eval_return_mean']:8.2f}"
            print(line, flush=True)

    def write_eval(self, env_steps: int, mean: float, std: float) -> None:
        """A row holding only a (final) evaluation."""
        if not self.enabled:
            return
        self._csv.writerow({k: _fmt(v) for k, v in
                            {"env_steps": env_steps, "eval_return_mean": mean,
                             "eval_return_std": std}.items()})
        self._file.flush()
        if self._tb is not None:
            self._tb.add_scalar("eval_return_mean", mean, env_steps)
        if not self.quiet:
            print(f"final evaluation: return {mean:.2f} +- {std:.2f}", flush=True)

    def final(self, summary: dict) -> None:
        if not self.enabled or self.quiet:
            return
        reached = ""
        if summary.get("target_return") is not None:
            reached = (f"; target {summary['target_return']:g} reached at "
                       f"{summary['target_reached_env_steps']:,} steps, "
                       f"{summary['target_reached_time_s']:.1f} s"
                       if summary["target_reached"] else
                       f"; target {summary['target_return']:g} NOT reached")
        print(f"done: {summary['env_steps']:,} env steps in {summary['wall_time_s']:.1f} s "
              f"({summary['sps']:,.0f} steps/s){reached}", file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
