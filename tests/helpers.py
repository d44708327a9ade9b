"""What the tests share: launching whole jobs (under mpirun, with timeouts: a hang fails the
test), reading what a run left behind, and stopping and resuming a run."""
import csv
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mpirl.bench import find_mpirun
from mpirl.files.checkpoint import Checkpoint, to_bytes
from mpirl.runtime import exit_codes

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ launching jobs


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


# ------------------------------------------------------------------ what a run left behind
# wall-clock measurements, which no two runs share
TIMING_COLUMNS = {"time_s", "sps", "learner_wait_rollouts", "learner_wait_learners",
                  "learner_gradient", "actor_wait_weights", "updates_per_s"}


def progress_rows(run: Path) -> list[dict]:
    with open(run / "progress.csv") as f:
        return list(csv.DictReader(f))


def evaluations(run: Path) -> list[float]:
    """The evaluation returns in progress.csv, in order."""
    return [float(r["eval_return_mean"]) for r in progress_rows(run) if r["eval_return_mean"]]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def learner_lines(run: Path, stem: str) -> tuple[list[str], list[str]]:
    """The two learners' per-update lines (``<stem>-0.txt``, ``<stem>-1.txt``) written by the
    digesting plug-ins of tests/plugins."""
    return tuple((run / f"{stem}-{rank}.txt").read_text().splitlines() for rank in (0, 1))


def assert_agree_every(first: list[str], second: list[str], k: int) -> None:
    """Model averaging: the learners' lines (update count first) are equal right after every
    ``k``-th update and differ between."""
    for a, b in zip(first, second):
        assert (a == b) == (int(a.split()[0]) % k == 0), (a, b)


def learning_rows(run) -> list[dict]:
    """progress.csv without the wall-clock columns, which no two runs share."""
    with open(run / "progress.csv") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}
                for r in csv.DictReader(f)]


def same_weights(a, b):
    wa = torch.load(a / "policy.pt", weights_only=True)
    wb = torch.load(b / "policy.pt", weights_only=True)
    return all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------ stopping and resuming
def wait_for_checkpoint(proc, run, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not list((run / "checkpoints").glob("ckpt-*.ckpt")):
        if proc.poll() is not None:
            pytest.fail(f"job ended before its first checkpoint:\n{proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.05)


def finish(proc, timeout=120.0):
    try:
        out, err = proc.communicate(timeout=timeout)
    except Exception:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"job did not end within {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def whole_and_resumed(tmp_path, args: list[str], budget: int, ranks: int = 3):
    """Run ``args`` to the end in ``whole``; run them again in ``parts``, stop that run with
    SIGTERM after its first checkpoint and resume it to the end. Returns (whole, parts)."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    res = run_job(["mpirl.train", *args, "--run-dir", str(whole)], ranks=ranks)
    assert res.returncode == 0, res.stderr
    proc = start_job(["mpirl.train", *args, "--run-dir", str(parts)], ranks=ranks)
    wait_for_checkpoint(proc, parts)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == exit_codes.PREEMPTED, err
    assert int(learning_rows(parts)[-1]["env_steps"]) < budget, \
        "the signal came after the run's end"
    res = run_job(["mpirl.train", "--resume", str(parts)], ranks=ranks)
    assert res.returncode == 0, res.stderr
    return whole, parts


# ------------------------------------------------------------------ hostile files
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_checkpoint(marker) -> bytes:
    """A checkpoint with a valid header and checksum whose payload runs a command when
    unpickled without restrictions."""
    good = to_bytes(Checkpoint({"env_steps": 5}, {}, [{"rank": 0}]))
    buf = io.BytesIO()
    torch.save({"format": 1, "meta": {"env_steps": 5}, "shared": _RunsCode(marker),
                "ranks": []}, buf)
    payload = buf.getvalue()
    assert good[:8] == b"MPIRLCKP"
    return struct.pack("<8s32sQ", b"MPIRLCKP", hashlib.sha256(payload).digest(),
                       len(payload)) + payload
