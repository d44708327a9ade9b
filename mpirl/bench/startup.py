"""``python -m mpirl.bench startup``: seconds from the launch of ``mpirun -n K python -m
mpirl.train`` to the first env step of any rank and to the end of a short run, which ranks
imported torch, and the ranks' peak resident memory (smallest-largest).

Each run's envs go through ``probe`` (``--env-wrapper mpirl.bench.startup:probe``), which
notes the wall-clock time of its process's first env step and, at the process's exit, whether
it imported torch and its peak memory, in ``$MPIRL_BENCH_PROBE_DIR``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpirl.bench import find_mpirun

PROBE_DIR = "MPIRL_BENCH_PROBE_DIR"
_noted: dict[str, bool] = {}


def _peak_rss_mb() -> int:
    """This process's peak resident memory (Linux), in MB; 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def probe(env):
    """An env wrapper for ``--env-wrapper``: the env as it is, with its first step timed."""
    import atexit

    import gymnasium as gym
    directory = Path(os.environ[PROBE_DIR])
    if not _noted:
        def torch_note() -> None:
            (directory / f"torch-{os.getpid()}").write_text(
                f"{int('torch' in sys.modules)} {_peak_rss_mb()}")
        atexit.register(torch_note)
        _noted["exit"] = True

    class FirstStep(gym.Wrapper):
        def step(self, action):
            if not _noted.get("step"):
                _noted["step"] = True
                (directory / f"step-{os.getpid()}").write_text(repr(time.time()))
            return self.env.step(action)

    return FirstStep(env)


def bench_startup(args: argparse.Namespace, train_args: list[str]) -> list[dict]:
    launcher = shlex.split(args.launcher) if args.launcher else [find_mpirun() or "mpirun"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpirl-bench-") as tmp:
        for round_ in range(args.rounds):
            for ranks in args.ranks:
                probes = Path(tmp) / f"probe-{round_}-{ranks}"
                probes.mkdir()
                cmd = [*launcher, "-n", str(ranks), sys.executable, "-m", "mpirl.train",
                       "--algo", args.algo, "--env", args.env,
                       "--total-steps", str(args.total_steps), "--quiet", "--no-tensorboard",
                       "--env-wrapper", "mpirl.bench.startup:probe",
                       "--run-dir", str(Path(tmp) / f"run-{round_}-{ranks}"), *train_args]
                start = time.time()
                out = subprocess.run(cmd, capture_output=True, text=True,
                                     env=dict(os.environ, **{PROBE_DIR: str(probes)}))
                end = time.time()
                if out.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
                steps = sorted(float(p.read_text()) for p in probes.glob("step-*"))
                notes = [p.read_text().split() for p in probes.glob("torch-*")]
                torch = [int(flag) for flag, _ in notes]
                rss = sorted(int(mb) for _, mb in notes)
                rows.append({"round": round_, "ranks": ranks,
                             "first_step_s": round(steps[0] - start, 2),
                             "all_stepping_s": round(steps[-1] - start, 2),
                             "run_s": round(end - start, 2),
                             "ranks_with_torch": f"{sum(torch)}/{len(torch)}",
                             "peak_rss_mb": f"{rss[0]}-{rss[-1]}"})
    return rows
