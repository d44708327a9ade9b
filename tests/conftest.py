import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mpirun_path() -> str | None:
    """The mpirun next to this Python (a venv with the mpich wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpirun"
    return str(local) if local.exists() else shutil.which("mpirun") or shutil.which("mpiexec")


def run_job(args: list[str], ranks: int | None = None, timeout: float = 240,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m mpirl.<args>`` (under mpirun with ``ranks`` ranks); a hang fails the test."""
    cmd = [sys.executable, "-m", *args]
    if ranks is not None:
        launcher = mpirun_path()
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
