import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpirl.bench import find_mpirun

ROOT = Path(__file__).resolve().parent.parent


def run_job(args: list[str], ranks: int | None = None, timeout: float = 240,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m mpirl.<args>`` (under mpirun with ``ranks`` ranks); a hang fails the test."""
    cmd, env = _job_command(args, ranks)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or ROOT, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout} s\n{e.stdout}\n{e.stderr}")


def _job_command(args: list[str], ranks: int | None) -> tuple[list[str], dict]:
    cmd = [sys.executable, "-m", *args]
    if ranks is not None:
        launcher = find_mpirun()
        if launcher is None:
            pytest.skip("no mpirun found")
        cmd = [launcher, "-n", str(ranks), *cmd]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]) + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    return cmd, env


def start_job(args: list[str], ranks: int | None = None) -> subprocess.Popen:
    """Start ``python -m mpirl.<args>`` (under mpirun) in the background, output piped."""
    cmd, env = _job_command(args, ranks)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def rank_pids(proc: subprocess.Popen) -> dict[int, int]:
    """{MPI rank: pid} of a job's rank processes, found under the launcher's process tree
    (the rank comes from the PMI_RANK / OMPI_COMM_WORLD_RANK variable in their environment)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    ranks, todo = {}, [proc.pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            name, _, value = var.partition(b"=")
            if name in (b"PMI_RANK", b"OMPI_COMM_WORLD_RANK") and pid != proc.pid:
                ranks[int(value)] = pid
    return ranks
