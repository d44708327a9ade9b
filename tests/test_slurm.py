"""The batch scripts in slurm/, submitted to a real SLURM controller.

They need a running cluster (``slurm/local-cluster.sh install && slurm/local-cluster.sh start``
on this host; .ci/run starts one) and are skipped without one, unless MPIRL_REQUIRE_SLURM=1
(set by CI) turns a missing cluster into a failure.
"""
import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, run_job, summary

SLURM = ROOT / "slurm"
QUICK = ["--total-steps", "20000", "--eval-episodes", "2", "--no-tensorboard"]


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    usable = ("idle", "mix", "alloc", "plnd", "comp")  # up, whether busy or not
    return res.returncode == 0 and any(line.startswith(usable) for line in res.stdout.split())


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_up():
        if os.environ.get("MPIRL_REQUIRE_SLURM") == "1":
            pytest.fail("MPIRL_REQUIRE_SLURM=1 but no SLURM cluster answers (sinfo)")
        pytest.skip("no SLURM cluster (start one with slurm/local-cluster.sh start)")


def _env() -> dict:
    # jobs inherit this environment (sbatch --export=ALL): the test's python comes first
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                PYTHONUNBUFFERED="1")


def submit(script: str, workdir: Path, *args: str, sbatch: tuple = ()) -> str:
    res = subprocess.run(["sbatch", "--parsable", f"--chdir={workdir}",
                          f"--output={workdir}/out-%j.txt", *sbatch, str(SLURM / script),
                          *args], capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def job_state(job: str) -> dict:
    res = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    return dict(re.findall(r"(\w+)=(\S*)", res.stdout))


def wait_job(job: str, timeout: float = 180, release_requeued: bool = False) -> dict:
    """Poll until the job ends (quicker than sbatch --wait, which polls ever more slowly).
    ``release_requeued``: start a requeued job at once instead of after Slurm's delay."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(job)
        if state.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                     "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        if release_requeued and state.get("JobState") == "PENDING" and \
                state.get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"])
        time.sleep(0.5)
    subprocess.run(["scancel", job])
    pytest.fail(f"job {job} did not end within {timeout} s: {job_state(job)}")


@pytest.mark.parametrize("script", ["train.sbatch", "train-mpirun.sbatch"])
def test_single_node_job_trains_and_names_its_run_after_the_job(cluster, tmp_path, script):
    job = submit(script, tmp_path, *QUICK, sbatch=("--ntasks=4",))
    state = wait_job(job)
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert state["JobState"] == "COMPLETED" and state["ExitCode"] == "0:0", out
    run = tmp_path / "runs" / f"a2c-CartPole-v1-{job}"
    s = summary(run)
    assert s["world_size"] == 4 and s["env_steps"] >= 20000
    assert "4 rank(s): 1 learner(s), 3 actor(s)" in out


def test_two_nodes_make_one_world_and_print_the_placement(cluster, tmp_path):
    job = submit("multinode.sbatch", tmp_path, *QUICK,
                 sbatch=("--nodes=2", "--ntasks-per-node=2"))
    state = wait_job(job)
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert state["ExitCode"] == "0:0", out
    assert "mpirl: placement: node1: learners 0-1; node2: actors 2-3" in out
    assert summary(tmp_path / "runs" / f"a2c-CartPole-v1-{job}")["world_size"] == 4


@pytest.mark.parametrize("how", ["USR1 to the batch script", "TERM to every process"])
def test_a_signalled_job_checkpoints_requeues_and_resumes(cluster, tmp_path, how):
    job = submit("train.sbatch", tmp_path, "--total-steps", "150000", "--checkpoint-every",
                 "20", "--eval-episodes", "2", "--no-tensorboard", "--quiet",
                 sbatch=("--ntasks=4",))
    run = tmp_path / "runs" / f"a2c-CartPole-v1-{job}"
    deadline = time.monotonic() + 120
    while not list(run.glob("checkpoints/*.ckpt")):
        assert time.monotonic() < deadline, job_state(job)
        time.sleep(0.2)
    signal = ["--signal=USR1", "--batch"] if how.startswith("USR1") else ["--signal=TERM"]
    subprocess.run(["scancel", *signal, job], check=True)
    state = wait_job(job, release_requeued=True)
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert state["JobState"] == "COMPLETED" and state["ExitCode"] == "0:0", out
    assert state["Restarts"] == "1", out
    assert "requeueing: scontrol requeue" in out and "resuming from" in out
    stopped = int(re.search(r"stopped by a stop signal .* at env step ([\d,]+)", out)
                  .group(1).replace(",", ""))
    assert 0 < stopped < 150000
    with open(run / "progress.csv") as f:
        steps = [int(r["env_steps"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] >= 150000  # continued, not restarted
    s = summary(run)
    assert s["resumed"] == 1 and s["env_steps"] >= 150000


def test_job_array_runs_each_seed_in_its_own_directory(cluster, tmp_path):
    job = submit("seeds.sbatch", tmp_path, *QUICK, sbatch=("--ntasks=2",))
    for task in range(3):
        state = wait_job(f"{job}_{task}")
        assert state["ExitCode"] == "0:0", (tmp_path / f"out-{job}_{task}.txt")
    runs = sorted((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == [f"a2c-CartPole-v1-{job}_{t}" for t in range(3)]
    seeds = [re.search(r"^seed: (\d+)$", (r / "config.yaml").read_text(), re.M).group(1)
             for r in runs]
    assert seeds == ["0", "1", "2"]


def test_a_sweep_runs_as_a_job_array_and_is_summarized(cluster, tmp_path):
    # a 2 x 2 grid with 2 seeds: 8 array tasks, each an MPI job of its own
    (tmp_path / "spec.yaml").write_text(
        "runs: runs/sweep\nconfig:\n  algo: a2c\n  total_steps: 6000\n  eval_episodes: 2\n"
        "  tensorboard: false\ngrid:\n  lr: [0.002, 0.0005]\n  n_steps: [5, 10]\n"
        "seeds: [0, 1]\n")
    job = submit("sweep.sbatch", tmp_path, "spec.yaml", sbatch=("--array=0-7", "--ntasks=2"))
    for task in range(8):
        state = wait_job(f"{job}_{task}")
        assert state["ExitCode"] == "0:0", (tmp_path / f"out-{job}_{task}.txt")
    res = subprocess.run([sys.executable, "-m", "mpirl.sweep", "summarize", "runs/sweep"],
                         capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert res.returncode == 0, res.stderr
    table = [line.split() for line in res.stdout.splitlines()[2:]]
    assert sorted(row[1] for row in table) == ["lr=0.0005,n_steps=10", "lr=0.0005,n_steps=5",
                                              "lr=0.002,n_steps=10", "lr=0.002,n_steps=5"]
    assert all(row[2] == "2" for row in table)


def test_tasks_started_without_pmi_are_refused_not_trained_n_times(cluster, tmp_path):
    res = subprocess.run(["srun", "--mpi=none", "-n", "3", sys.executable, "-m", "mpirl.train",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True,
                         env=_env(), cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("mpirl: error: SLURM started 3 tasks, but MPI sees a world of 1") \
        == 1
    assert "srun --mpi=pmi2" in res.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- without a cluster
def test_singleton_detection_reads_the_step_size(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "3")
    monkeypatch.setenv("SLURM_PROCID", "0")
    res = run_job(["mpirl.train", "--run-dir", str(tmp_path / "run")])
    assert res.returncode == 2 and "SLURM started 3 tasks" in res.stderr


def test_requeue_passes_signals_on_and_requeues_only_a_preempted_run(tmp_path):
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(3))\n"
             "print('ready', flush=True)\n"
             "time.sleep(60)\n")
    env = {k: v for k, v in _env().items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen([sys.executable, "-m", "mpirl.requeue", sys.executable, "-c",
                             child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(__import__("signal").SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "got SIGUSR1; passing it to" in err and "not in a SLURM job" in err

    from mpirl.requeue import run
    marker = tmp_path / "requeued"
    requeue = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    assert run([sys.executable, "-c", "raise SystemExit(0)"], requeue) == 0
    assert not marker.exists()  # a finished run is not requeued
    assert run([sys.executable, "-c", "raise SystemExit(3)"], requeue) == 3
    assert marker.exists()


def test_auto_resume_continues_and_a_used_run_dir_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    args = ["mpirl.train", "--total-steps", "3000", "--eval-episodes", "2", "--quiet",
            "--no-tensorboard", "--run-dir", str(run)]
    res = run_job([*args, "--auto-resume"])
    assert res.returncode == 0 and "resuming" not in res.stderr, res.stderr
    res = run_job(args)
    assert res.returncode == 2 and f"run directory {run} already holds a run" in res.stderr
    res = run_job([*args, "--auto-resume", "--total-steps", "6000", "--override",
                   "total_steps"])
    assert res.returncode == 0 and "resuming from" in res.stderr, res.stderr
    assert summary(run)["env_steps"] >= 6000 and summary(run)["resumed"] == 1


def test_a_heterogeneous_job_puts_the_learners_on_their_own_nodes(cluster, tmp_path):
    job = submit("gpu-learners.sbatch", tmp_path, *QUICK)
    state = wait_job(job, timeout=240)  # Slurm schedules heterogeneous jobs less eagerly
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert state["ExitCode"] == "0:0", out
    placement = re.search(r"mpirl: placement: (\S+): learners 0-1; (\S+): actors 2-5$", out,
                          re.M)
    assert placement and placement.group(1) != placement.group(2), out
    assert "6 rank(s): 2 learner(s), 4 actor(s)" in out
