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
    cmd = [sys.executable, "-m", *args]
    if ranks is not None:
        launcher = find_mpirun()
        if launcher is None:
            pytest.skip("no mpirun found")
        cmd = [launcher, "-n", str(ranks), *cmd]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]) + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or ROOT, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout} s\n{e.stdout}\n{e.stderr}")
