"""The commands that time whole training runs: sps, compare, variants, a3c."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpirl.bench import (_acting_ranks, _add_row, _column, _progress, _wait_shares,
                         find_mpirun)
from mpirl.runtime.timing import share


def bench_sps(args: argparse.Namespace, train_args: list[str]) -> list[dict]:
    """One training run per rank count. Weak scaling keeps --envs-per-actor (the work per
    actor) fixed, so the batch grows with the actors; strong scaling keeps the global batch
    (--global-envs envs in all) fixed and splits it over the actors."""
    launcher = shlex.split(args.launcher) if args.launcher else [find_mpirun() or "mpirun"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpirl-bench-") as tmp:
        for ranks in args.ranks:
            run_dir = Path(tmp) / f"n{ranks}"
            acting = _acting_ranks(ranks, args.learners)
            envs = args.envs_per_actor if args.scaling == "weak" else \
                max(1, args.global_envs // acting)
            cmd = [*launcher, "-n", str(ranks), sys.executable, "-m", "mpirl.train",
                   "--env", args.env, "--total-steps", str(args.total_steps), "--eval-every",
                   "0", "--eval-episodes", "1", "--quiet", "--no-tensorboard",
                   "--learners", str(args.learners), "--envs-per-actor", str(envs),
                   "--run-dir", str(run_dir), *train_args]
            t = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.stderr.write(res.stderr)
                raise SystemExit(f"benchmark run with {ranks} ranks failed: {shlex.join(cmd)}")
            s = json.loads((run_dir / "summary.json").read_text())
            rows.append({"scaling": args.scaling, "ranks": ranks, "learners": s["learners"],
                         "actors": s["actors"], "envs_per_actor": envs,
                         "env_steps": s["env_steps"], "train_s": s["wall_time_s"],
                         "sps": round(s["sps"]), "job_s": round(time.perf_counter() - t, 1),
                         **_wait_shares(run_dir)})
            print(f"  {ranks:>2} ranks: {rows[-1]['sps']:>8,} steps/s", file=sys.stderr, flush=True)
    base, base_ranks = rows[0]["sps"], rows[0]["ranks"]
    for r in rows:
        r["vs_first"] = round(r["sps"] / base, 2)
        r["efficiency"] = round(r["vs_first"] / (r["ranks"] / base_ranks), 2)
    return rows


def bench_compare(args: argparse.Namespace, train_args: list[str]) -> list[dict]:
    """The algorithms in turn on the same ranks, ``args.rounds`` times: on a shared host the
    ratio of neighbouring runs is the figure to quote, not either throughput alone."""
    launcher = shlex.split(args.launcher) if args.launcher else [find_mpirun() or "mpirun"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpirl-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            first = None  # this round's run of the first algorithm
            for i, algo in enumerate(args.algos):
                run_dir = Path(tmp) / f"{i}-{algo}{round_}"
                cmd = [*launcher, "-n", str(args.ranks), sys.executable, "-m", "mpirl.train",
                       "--algo", algo, "--env", args.env, "--total-steps",
                       str(args.total_steps), "--eval-every", "0", "--eval-episodes", "1",
                       "--quiet", "--no-tensorboard", "--run-dir", str(run_dir), *train_args]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    sys.stderr.write(res.stderr)
                    raise SystemExit(f"benchmark run failed: {shlex.join(cmd)}")
                s = json.loads((run_dir / "summary.json").read_text())
                row = {"round": round_, "algo": algo, "sps": round(s["train_sps"]),
                       **_wait_shares(run_dir)}
                lags = _column(_progress(run_dir), "policy_lag_mean")
                if lags:  # algorithms whose actors run ahead of their learners report it
                    row["policy_lag"] = round(float(np.mean(lags)), 2)
                first = _add_row(rows, row, first, f"round {round_} {algo:>8}")
    return rows


def _variant(text: str) -> tuple[str, list[str], dict[str, str]]:
    """NAME=FLAGS -> (name, training flags, environment variables)."""
    name, sep, flags = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--variant {text!r}: expected NAME='FLAGS'")
    words = shlex.split(flags)
    env = dict(w.split("=", 1) for w in words if "=" in w and w.split("=", 1)[0].isupper())
    return name, [w for w in words if not ("=" in w and w.split("=", 1)[0].isupper())], env


def bench_variants(args: argparse.Namespace, train_args: list[str]) -> list[dict]:
    """Each variant in turn on the same ranks, ``args.rounds`` times (ratios of neighbouring
    runs are the figures to quote on a shared host)."""
    launcher = shlex.split(args.launcher) if args.launcher else [find_mpirun() or "mpirun"]
    variants = [_variant(v) for v in args.variant]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpirl-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            first = None
            for i, (name, flags, env) in enumerate(variants):
                run_dir = Path(tmp) / f"{i}-{round_}"
                cmd = [*launcher, "-n", str(args.ranks), sys.executable, "-m", "mpirl.train",
                       "--env", args.env, "--total-steps", str(args.total_steps), "--quiet",
                       "--no-tensorboard", "--seed", str(args.seed + round_ - 1),
                       "--run-dir", str(run_dir), *train_args, *flags]
                res = subprocess.run(cmd, capture_output=True, text=True,
                                     env={**os.environ, **env})
                if res.returncode != 0:
                    sys.stderr.write(res.stderr)
                    raise SystemExit(f"benchmark run failed: {shlex.join(cmd)}")
                s = json.loads((run_dir / "summary.json").read_text())
                table = json.loads((run_dir / "timing.json").read_text())["breakdown"]
                row = {"round": round_, "variant": name, "sps": round(s["train_sps"]),
                       "learner_allreduce": round(share(table, "learner", "allreduce"), 3),
                       "learner_wait_learners": round(share(table, "learner",
                                                            "wait_learners"), 3),
                       "allreduce_bytes_per_step": round(s.get("allreduce_bytes_per_step",
                                                               0.0), 1)}
                progress = _progress(run_dir)
                cut = _column(progress, "cut_rollouts")
                if cut:
                    row["cut_rollouts"] = round(float(np.mean(cut)), 3)
                row["best_eval"] = round(max(_column(progress, "eval_return_mean")), 1)
                row["final_eval"] = round(s["final_eval_return"], 1)
                first = _add_row(rows, row, first, f"round {round_} {name:>12}")
    return rows


def bench_a3c(args: argparse.Namespace, train_args: list[str]) -> list[dict]:
    """One A3C run per (servers, workers). A server that is busy most of its time is the
    bottleneck (add servers); otherwise the workers are (their CPU: env steps, forward and
    backward passes)."""
    launcher = shlex.split(args.launcher) if args.launcher else [find_mpirun() or "mpirun"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpirl-bench-") as tmp:
        for servers in args.servers:
            for workers in args.workers:
                run_dir = Path(tmp) / f"s{servers}w{workers}"
                cmd = [*launcher, "-n", str(servers + workers), sys.executable, "-m",
                       "mpirl.train", "--algo", args.algo, "--servers", str(servers), "--env",
                       args.env, "--total-steps", str(args.total_steps), "--eval-every", "0",
                       "--eval-episodes", "1", "--quiet", "--no-tensorboard", "--run-dir",
                       str(run_dir), *train_args]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    sys.stderr.write(res.stderr)
                    raise SystemExit(f"benchmark run failed: {shlex.join(cmd)}")
                s = json.loads((run_dir / "summary.json").read_text())
                busy = max(s["server_busy"])
                rows.append({"servers": servers, "workers": workers,
                             "sps": round(s["train_sps"]),
                             "sps_per_worker": round(s["train_sps"] / workers),
                             "server_updates_per_s": " ".join(
                                 f"{u:.0f}" for u in s["server_updates_per_s"]),
                             "server_busy": " ".join(f"{b:.2f}" for b in s["server_busy"]),
                             "staleness_mean": round(s["staleness_mean"], 2),
                             "bottleneck": "servers" if busy > 0.7 else "workers"})
                print(f"  {servers} server(s), {workers:>2} worker(s): {rows[-1]['sps']:>8,} "
                      f"steps/s", file=sys.stderr, flush=True)
    return rows
