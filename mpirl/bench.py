"""``python -m mpirl.bench``: measure this machine or allocation.

  python -m mpirl.bench sps [--ranks 1 2 4 8 16] [--env CartPole-v1] [--total-steps N]
      Training throughput (env steps/s, learning included) against rank count. Launches one
      ``mpirun -n K python -m mpirl.train`` per K (``--launcher`` to change) and reads each
      run's summary.json. Extra training flags go after ``--``.

  mpirun -n 2 python -m mpirl.bench allreduce [--params 1e4 1e5 1e6]
      mpirl's gradient averaging against a raw mpi4py ``Allreduce`` of the same bytes. Each
      sample syncs the ranks, runs the same backward pass, then times only the call that
      makes the gradient global, as an update experiences it.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in columns))


def _write_csv(path: str | None, rows: list[dict]) -> None:
    if not path:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------- sps
def find_mpirun() -> str | None:
    """The mpirun next to this Python (a venv with an MPI wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpirun"
    return str(local) if local.exists() else (shutil.which("mpirun") or shutil.which("mpiexec"))


def bench_sps(args: argparse.Namespace, train_args: list[str]) -> list[dict]:
    launcher = shlex.split(args.launcher) if args.launcher else [find_mpirun() or "mpirun"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpirl-bench-") as tmp:
        for ranks in args.ranks:
            run_dir = Path(tmp) / f"n{ranks}"
            cmd = [*launcher, "-n", str(ranks), sys.executable, "-m", "mpirl.train",
                   "--env", args.env, "--total-steps", str(args.total_steps), "--eval-every",
                   "0", "--eval-episodes", "1", "--quiet", "--no-tensorboard",
                   "--run-dir", str(run_dir), *train_args]
            t = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.stderr.write(res.stderr)
                raise SystemExit(f"benchmark run with {ranks} ranks failed: {shlex.join(cmd)}")
            s = json.loads((run_dir / "summary.json").read_text())
            rows.append({"ranks": ranks, "learners": s["learners"], "actors": s["actors"],
                         "env_steps": s["env_steps"], "train_s": s["wall_time_s"],
                         "sps": round(s["sps"]), "job_s": round(time.perf_counter() - t, 1)})
            print(f"  {ranks:>2} ranks: {rows[-1]['sps']:>8,} steps/s", file=sys.stderr, flush=True)
    base = rows[0]["sps"]
    for r in rows:
        r["vs_first"] = round(r["sps"] / base, 2)
    return rows


# ---------------------------------------------------------------------------- allreduce
def bench_allreduce(args: argparse.Namespace) -> list[dict]:
    import torch

    from mpirl import comm

    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    rows = []
    for n in [int(float(p)) for p in args.params]:
        model = torch.nn.Linear(n, 1, bias=False)  # n parameters
        averager = comm.GradientAverager(model.parameters(), world)
        x = torch.randn(8, n)

        def backward() -> None:  # the work an update does before it averages
            averager.zero_grad()
            averager.backward(model(x).square().mean())

        def raw() -> None:
            comm.raw_allreduce_sum_(world, averager.flat.numpy())

        def ours() -> None:
            averager.average()

        times: dict[str, list[float]] = {}
        for name, sync in [("raw", raw), ("mpirl", ours)] * 2:  # interleaved, twice
            samples = []
            for i in range(args.warmup + args.repeat):
                comm.barrier(world)
                if sync is ours:
                    averager.announce()  # as an update does, before its forward pass
                backward()
                t = time.perf_counter()
                sync()
                if i >= args.warmup:
                    samples.append(time.perf_counter() - t)
            times.setdefault(name, []).append(float(np.median(samples)))
        # the slowest rank decides how long a collective takes; best of the two rounds
        per_rank = comm.gather_objects(world, times)
        raw_s = min(max(t["raw"][i] for t in per_rank) for i in range(2))
        our_s = min(max(t["mpirl"][i] for t in per_rank) for i in range(2))
        rows.append({"params": n, "bytes": n * 4, "ranks": size,
                     "raw_allreduce_us": round(raw_s * 1e6, 1),
                     "mpirl_average_us": round(our_s * 1e6, 1),
                     "ratio": round(our_s / raw_s, 3)})
    return rows if rank == 0 else []


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
    p.add_argument("--launcher", default=None,
                   help="launcher command before '-n K', e.g. 'srun --mpi=pmi2' "
                        "(default: the mpirun next to this Python, else on PATH)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p = sub.add_parser("allreduce", help="gradient averaging against raw Allreduce (under mpirun)")
    p.add_argument("--params", nargs="+", default=["1e4", "1e5", "1e6"])
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)

    if args.what == "sps":
        rows = bench_sps(args, train_args)
        print(f"training throughput, {args.env}, {args.total_steps:,} env steps per run "
              f"({os.cpu_count()} CPUs here)")
        _print_table(rows, list(rows[0]))
    else:
        rows = bench_allreduce(args)
        if rows:
            print(f"gradient averaging vs raw Allreduce, {rows[0]['ranks']} ranks")
            _print_table(rows, list(rows[0]))
    if rows:
        _write_csv(args.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
