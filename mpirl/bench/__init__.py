"""``python -m mpirl.bench``: measure this machine or allocation.

  python -m mpirl.bench sps [--ranks 1 2 4 8 16] [--scaling weak|strong] [--csv F]
      Training throughput (env steps/s, learning included) against rank count. Launches one
      ``mpirun -n K python -m mpirl.train`` per K (``--launcher 'srun --mpi=pmi2'`` inside a
      SLURM allocation) and reads each run's summary.json and time breakdown (how much the
      learners and actors waited). Weak scaling keeps the envs per actor, strong scaling
      the global batch. Extra training flags go after ``--``.

  python -m mpirl.bench compare --algos a2c impala [--ranks 4] [--rounds 3]
      Registered algorithms against each other on the same ranks, interleaved (A, B, A, B,
      ...): training env steps/s, how much each role waited, the mean policy lag where a run
      reports one, and each run's throughput over the first algorithm's run of its round.

  mpirun -n 2 python -m mpirl.bench allreduce [--params 1e4 1e5 1e6]
      mpirl's gradient averaging against a raw mpi4py ``Allreduce`` of the same bytes. Each
      sample syncs the ranks, runs the same backward pass, then times only the call that
      makes the gradient global, as an update experiences it.

  python -m mpirl.bench variants --variant NAME='FLAGS' ... [--ranks 4] [--rounds 3]
      Training configurations against each other on the same ranks, interleaved: training
      env steps/s (and over the first variant's run of the round), the learners' share of
      time in the allreduce itself and waiting for each other there, the bytes each learner
      puts into allreduces per env step, the share of rollouts cut short, and the final
      evaluation. FLAGS are training flags; VAR=VALUE words among them set environment
      variables of that run (e.g. ``MPIRL_FAULT=slow@4:4``). E.g. ``--sync gradients``
      against ``--sync average --average-every 8``.

  python -m mpirl.bench sumtree [--size 1e6] [--batch 1e5]
      The prioritized-replay sum tree: milliseconds to draw a batch of indices and to write
      a batch of new priorities, in a tree of the given size.

  python -m mpirl.bench a3c [--servers 1 2 4] [--workers 1 3 7 15] [--algo a3c]
      A3C (or ``--algo``: another algorithm on parameter servers) through the sharded
      parameter server: one ``mpirun -n S+W`` training run per pair
      (S servers, W workers). Prints env steps/s (all workers and per worker), each server's
      updates per second, how busy the servers were (share of their time spent on messages
      rather than waiting for them), the mean staleness, and where the bottleneck sits.

  python -m mpirl.bench startup [--ranks 1 4 16] [--rounds 3] [--algo a2c] [--env ...]
      Seconds from launching ``mpirun -n K python -m mpirl.train`` to the first env step of
      any rank, to every rank stepping, and to the end of a short run (--total-steps), and
      how many ranks imported torch and their peak memory; rank counts interleaved.

  DQN throughput: ``python -m mpirl.bench sps --ranks 4 --envs-per-actor 4 -- --algo dqn``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from mpirl.runtime.timing import share


def _columns(rows: list[dict]) -> list[str]:
    """Every key of the rows, in first-seen order (a row may lack some, e.g. actor figures
    for a run without actors)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(widths[c]) for c in columns))


def _write_csv(path: str | None, rows: list[dict]) -> None:
    if not path:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_columns(rows))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def find_mpirun() -> str | None:
    """The mpirun next to this Python (a venv with an MPI wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpirun"
    return str(local) if local.exists() else (shutil.which("mpirun") or shutil.which("mpiexec"))


def _acting_ranks(ranks: int, learners: int) -> int:
    from mpirl.execution.layout import plan_layout
    layout = plan_layout(ranks, learners)
    return layout.learners if layout.self_acting else layout.actors


def _wait_shares(run_dir: Path) -> dict:
    """The learners' and actors' share of time spent waiting, from the run's timing.json."""
    path = run_dir / "timing.json"
    if not path.is_file():
        return {}
    table = json.loads(path.read_text())["breakdown"]
    out = {"learner_wait": round(share(table, "learner", "wait_rollouts", "send",
                                       "wait_learners"), 3)}
    if "actor" in table:  # for weights, or (sending) for their learner to take their data
        out["actor_wait"] = round(share(table, "actor", "wait_weights", "send"), 3)
    return out


def _progress(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv") as f:
        return list(csv.DictReader(f))


def _column(progress: list[dict], key: str) -> list[float]:
    """The values of a progress.csv column, where rows have one."""
    return [float(r[key]) for r in progress if r.get(key)]


def _add_row(rows: list[dict], row: dict, first: dict | None, label: str) -> dict:
    """Append a run's row with its throughput over ``first`` (the round's first run, or this
    one); returns the round's first row."""
    first = first or row
    row["vs_first"] = round(row["sps"] / first["sps"], 2)
    rows.append(row)
    print(f"  {label}: {row['sps']:>8,} steps/s", file=sys.stderr, flush=True)
    return first


def _print_ratios(rows: list[dict], key: str) -> None:
    """Each configuration's throughput over the first one's, the median of its rounds (the
    rows' ``vs_first``), configurations named by ``key``."""
    names = list(dict.fromkeys(r[key] for r in rows))
    for name in names[1:]:
        ratios = [r["vs_first"] for r in rows if r[key] == name]
        print(f"{name} / {names[0]} throughput: median {float(np.median(ratios)):.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}x)")


def _interleaved_options(p: argparse.ArgumentParser, total_steps: int) -> None:
    """The options of the commands that run several configurations round after round."""
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--total-steps", type=int, default=total_steps)
    p.add_argument("--launcher", default=None,
                   help="launcher command before '-n K' (default: mpirun next to this Python)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, train_args = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="python -m mpirl.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("sps", help="training throughput against rank count")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--total-steps", type=int, default=300_000)
    p.add_argument("--learners", type=int, default=1)
    p.add_argument("--scaling", choices=("weak", "strong"), default="weak",
                   help="weak: fixed envs per actor; strong: a fixed global batch split over "
                        "the actors")
    p.add_argument("--envs-per-actor", type=int, default=16, help="for weak scaling")
    p.add_argument("--global-envs", type=int, default=64,
                   help="for strong scaling: envs in all, divided among the acting ranks")
    p.add_argument("--launcher", default=None,
                   help="launcher command before '-n K', e.g. 'srun --mpi=pmi2' "
                        "(default: the mpirun next to this Python, else on PATH)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p = sub.add_parser("compare", help="algorithms against each other on the same ranks, "
                       "interleaved")
    p.add_argument("--algos", nargs="+", required=True,
                   help="registered algorithms (--algo values); the first is the reference")
    _interleaved_options(p, total_steps=500_000)
    p = sub.add_parser("variants", help="training configurations against each other, "
                       "interleaved")
    p.add_argument("--variant", action="append", required=True,
                   help="NAME='FLAGS' (repeat; the first is the reference)")
    p.add_argument("--seed", type=int, default=0, help="of the first round (+1 per round)")
    _interleaved_options(p, total_steps=100_000)
    p = sub.add_parser("a3c", help="A3C: server update rates and worker throughput")
    p.add_argument("--algo", default="a3c",
                   help="the algorithm to run (any that runs on parameter servers)")
    p.add_argument("--servers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 3, 7, 15])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--total-steps", type=int, default=200_000)
    p.add_argument("--launcher", default=None,
                   help="launcher command before '-n K' (default: mpirun next to this Python)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p = sub.add_parser("startup", help="seconds from launch to the first env step")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--algo", default="a2c")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--total-steps", type=int, default=2_000)
    p.add_argument("--launcher", default=None,
                   help="launcher command before '-n K' (default: mpirun next to this Python)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p = sub.add_parser("allreduce", help="gradient averaging against raw Allreduce (under mpirun)")
    p.add_argument("--params", nargs="+", default=["1e4", "1e5", "1e6"])
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p = sub.add_parser("sumtree", help="prioritized replay: sampling and priority updates")
    p.add_argument("--size", default="1e6")
    p.add_argument("--batch", default="1e5")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    from mpirl.bench.kernels import bench_allreduce, bench_sumtree
    from mpirl.bench.startup import bench_startup
    from mpirl.bench.training import bench_a3c, bench_compare, bench_sps, bench_variants

    if args.what == "sps":
        rows = bench_sps(args, train_args)
        print(f"training throughput, {args.env}, {args.total_steps:,} env steps per run "
              f"({os.cpu_count()} CPUs here)")
        _print_table(rows, _columns(rows))
    elif args.what == "compare":
        rows = bench_compare(args, train_args)
        print(f"{', '.join(args.algos)} on {args.env}, {args.ranks} ranks, "
              f"{args.total_steps:,} env steps per run ({os.cpu_count()} CPUs here)")
        _print_ratios(rows, "algo")
        _print_table(rows, _columns(rows))
    elif args.what == "variants":
        rows = bench_variants(args, train_args)
        env = "the env each sets" if any("--env " in v for v in args.variant) else args.env
        print(f"{len(args.variant)} variants on {env}, {args.ranks} ranks, "
              f"{args.total_steps:,} env steps per run ({os.cpu_count()} CPUs here)")
        _print_ratios(rows, "variant")
        _print_table(rows, _columns(rows))
    elif args.what == "a3c":
        rows = bench_a3c(args, train_args)
        print(f"A3C throughput, {args.env}, {args.total_steps:,} env steps per run "
              f"({os.cpu_count()} CPUs here); bottleneck: servers when one is busy > 70% "
              f"of its time")
        _print_table(rows, _columns(rows))
    elif args.what == "startup":
        rows = bench_startup(args, train_args)
        print(f"start-up, --algo {args.algo} --env {args.env}, {args.total_steps:,} env steps "
              f"per run ({os.cpu_count()} CPUs here)")
        _print_table(rows, _columns(rows))
    elif args.what == "sumtree":
        rows = bench_sumtree(args)
        print("sum tree, median of the repeats")
        _print_table(rows, _columns(rows))
    else:
        rows = bench_allreduce(args)
        if rows:
            print(f"gradient averaging vs raw Allreduce, {rows[0]['ranks']} ranks")
            _print_table(rows, _columns(rows))
    if rows:
        _write_csv(args.csv, rows)
    return 0
