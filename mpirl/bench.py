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

  DQN throughput: ``python -m mpirl.bench sps --ranks 4 --envs-per-actor 4 -- --algo dqn``.
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


# ---------------------------------------------------------------------------- sps
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


# ---------------------------------------------------------------------------- compare
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


# ---------------------------------------------------------------------------- variants
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


# ---------------------------------------------------------------------------- a3c
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


# ---------------------------------------------------------------------------- sum tree
def bench_sumtree(args: argparse.Namespace) -> list[dict]:
    from mpirl.replay import SumTree
    rng = np.random.default_rng(0)
    size, batch = int(float(args.size)), int(float(args.batch))
    tree = SumTree(size)
    tree.set(np.arange(size), rng.random(size) + 1e-3)
    rows = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        index = tree.sample(batch, rng)
        sample_s = time.perf_counter() - t
        t = time.perf_counter()
        tree.set(index, rng.random(batch) + 1e-3)
        rows.append((sample_s, time.perf_counter() - t))
    sample_ms, update_ms = (1e3 * float(np.median(x)) for x in zip(*rows))
    return [{"tree_size": size, "batch": batch, "sample_ms": round(sample_ms, 2),
             "update_ms": round(update_ms, 2)}]


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

    if args.what == "sps":
        rows = bench_sps(args, train_args)
        print(f"training throughput, {args.env}, {args.total_steps:,} env steps per run "
              f"({os.cpu_count()} CPUs here)")
        _print_table(rows, _columns(rows))
    elif args.what == "compare":
        rows = bench_compare(args, train_args)
        print(f"{', '.join(args.algos)} on {args.env}, {args.ranks} ranks, "
              f"{args.total_steps:,} env steps per run ({os.cpu_count()} CPUs here)")
        for algo in args.algos[1:]:
            ratios = [r["vs_first"] for r in rows if r["algo"] == algo]
            print(f"{algo} / {args.algos[0]} throughput: median {float(np.median(ratios)):.2f}x "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}x)")
        _print_table(rows, _columns(rows))
    elif args.what == "variants":
        rows = bench_variants(args, train_args)
        print(f"{len(args.variant)} variants on {args.env}, {args.ranks} ranks, "
              f"{args.total_steps:,} env steps per run ({os.cpu_count()} CPUs here)")
        names = list(dict.fromkeys(r["variant"] for r in rows))
        for name in names[1:]:
            ratios = [r["vs_first"] for r in rows if r["variant"] == name]
            print(f"{name} / {names[0]} throughput: median {float(np.median(ratios)):.2f}x "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}x)")
        _print_table(rows, _columns(rows))
    elif args.what == "a3c":
        rows = bench_a3c(args, train_args)
        print(f"A3C throughput, {args.env}, {args.total_steps:,} env steps per run "
              f"({os.cpu_count()} CPUs here); bottleneck: servers when one is busy > 70% "
              f"of its time")
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


if __name__ == "__main__":
    sys.exit(main())
