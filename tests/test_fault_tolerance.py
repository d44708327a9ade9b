"""Faults injected into whole jobs under mpirun: stop signals and exact resume, damaged and
crafted checkpoints, killed, failing, hanging and diverging ranks. Every job runs with a
timeout, so a hang fails the test instead of blocking the suite."""
import json
import os
import random
import signal
import time

import pytest

from mpirl.runtime import exit_codes

from helpers import (crafted_checkpoint, finish, learning_rows, rank_pids, run_job, same_weights,
                     start_job, wait_for_checkpoint, whole_and_resumed)

# a run long enough to be interrupted mid-way, with checkpoints that mark progress
LONG = ["--total-steps", "96000", "--log-every", "4000", "--eval-every", "32000",
        "--eval-episodes", "3", "--checkpoint-every", "40", "--seed", "3", "--quiet",
        "--no-tensorboard"]


@pytest.mark.parametrize("how", ["SIGTERM to mpirun", "SIGUSR1 to one actor"])
def test_a_stopped_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, how):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    res = run_job(["mpirl.train", *LONG, "--run-dir", str(whole)], ranks=3)
    assert res.returncode == 0, res.stderr

    proc = start_job(["mpirl.train", *LONG, "--run-dir", str(parts)], ranks=3)
    wait_for_checkpoint(proc, parts)
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.kill(rank_pids(proc)[2], signal.SIGUSR1)
    code, out, err = finish(proc)
    assert code == exit_codes.PREEMPTED, err
    assert "stopped by a stop signal" in err and f"--resume {parts}" in err
    assert int(learning_rows(parts)[-1]["env_steps"]) < 96000, "the signal came after the run's end"

    res = run_job(["mpirl.train", "--resume", str(parts)], ranks=3)
    assert res.returncode == 0, res.stderr
    assert "resuming from" in res.stderr
    assert same_weights(whole, parts)
    rows_whole, rows_parts = learning_rows(whole), learning_rows(parts)
    assert rows_parts == rows_whole  # no gap, no duplicate, the same numbers
    steps = [int(r["env_steps"]) for r in rows_parts]
    assert steps == sorted(set(steps))
    assert json.loads((parts / "summary.json").read_text())["resumed"] == 1


DQN_LONG = ["--algo", "dqn", "--total-steps", "40000", "--log-every", "2000", "--eval-every",
            "20000", "--eval-episodes", "3", "--checkpoint-every", "30", "--seed", "3",
            "--replay-ratio", "8", "--checkpoint-replay", "--quiet", "--no-tensorboard"]


@pytest.mark.parametrize("target", ["--double-q", "--no-double-q"])
def test_a_stopped_and_resumed_dqn_run_with_its_replay_ends_like_an_uninterrupted_one(
        tmp_path, target):
    """The replay shards, the target network, the update schedule and the chunks actors had
    already sent for the next iteration all go into the checkpoint, so a DQN run resumed on
    the same layout repeats the uninterrupted run exactly. (The learner caches the target
    network's action values of the stored observations until its replay outgrows the samples
    drawn between two target copies, 25,600 here: the stop comes while it caches.)"""
    whole, parts = whole_and_resumed(tmp_path, [*DQN_LONG, target], 40000)
    assert same_weights(whole, parts)
    assert learning_rows(parts) == learning_rows(whole)
    if target == "--no-double-q":
        return
    # without --checkpoint-replay the replay refills before updates go on, and it still ends
    res = run_job(["mpirl.train", *DQN_LONG[:-3], "--quiet", "--no-tensorboard",
                   "--no-checkpoint-replay", "--total-steps", "12000", "--run-dir",
                   str(tmp_path / "small")], ranks=3)
    assert res.returncode == 0, res.stderr
    small = sorted((tmp_path / "small" / "checkpoints").glob("*.ckpt"))
    assert small[-1].stat().st_size < sorted((parts / "checkpoints").glob("*.ckpt"))[-1] \
        .stat().st_size / 3
    res = run_job(["mpirl.train", "--resume", str(tmp_path / "small"), "--total-steps",
                   "16000", "--override", "total-steps"], ranks=3)
    assert res.returncode == 0, res.stderr


def _short_run(run, ranks=2, extra=()):
    res = run_job(["mpirl.train", "--total-steps", "8000", "--checkpoint-every", "10",
                   "--keep-checkpoints", "3", "--envs-per-actor", "4", "--quiet",
                   "--no-tensorboard", "--eval-episodes", "2", "--run-dir", str(run), *extra],
                  ranks=ranks)
    assert res.returncode == 0, res.stderr
    return sorted((run / "checkpoints").glob("ckpt-*.ckpt"))


def test_resume_skips_a_truncated_or_crafted_checkpoint_and_says_so(tmp_path):
    run = tmp_path / "run"
    older, previous, newest = _short_run(run)
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 3])
    marker = tmp_path / "pwned"
    crafted = run / "checkpoints" / "ckpt-999999999999.ckpt"
    crafted.write_bytes(crafted_checkpoint(marker))
    res = run_job(["mpirl.train", "--resume", str(run), "--total-steps", "12000",
                   "--override", "total-steps"], ranks=2)
    assert res.returncode == 0, res.stderr
    assert f"skipping checkpoint: {crafted} cannot be loaded safely" in res.stderr
    assert f"skipping checkpoint: {newest} is truncated" in res.stderr
    assert f"resuming from {previous}" in res.stderr
    assert not marker.exists()
    assert json.loads((run / "summary.json").read_text())["env_steps"] >= 12000


def test_resume_refuses_a_changed_config_or_a_run_without_checkpoints(tmp_path):
    run = tmp_path / "run"
    _short_run(run)
    res = run_job(["mpirl.train", "--resume", str(run), "--lr", "0.01"], ranks=2)
    assert res.returncode == exit_codes.BAD_INPUT
    assert res.stderr.count("mpirl: error:") == 1
    assert "--lr 0.01 (the run has 0.002)" in res.stderr and "--override lr" in res.stderr
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    res = run_job(["mpirl.train", "--resume", str(run)], ranks=2)
    assert res.returncode == exit_codes.BAD_INPUT and "no checkpoint in" in res.stderr
    res = run_job(["mpirl.train", "--resume", str(tmp_path / "nothing")], ranks=2)
    assert res.returncode == exit_codes.BAD_INPUT and "not an mpirl run directory" in res.stderr


def test_resume_on_another_rank_count_re_lays_out_and_says_what_carries_over(tmp_path):
    run = tmp_path / "run"
    _short_run(run, ranks=2)
    res = run_job(["mpirl.train", "--resume", str(run), "--learners", "2", "--total-steps",
                   "16000", "--override", "total_steps"], ranks=4)
    assert res.returncode == 0, res.stderr
    assert "taken on 2 rank(s) (1 learner(s)) and this run has 4 (2)" in res.stderr
    assert "weights, optimizer state and counters carry over" in res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 16000 and summary["world_size"] == 4
    steps = [int(r["env_steps"]) for r in learning_rows(run)]
    assert steps == sorted(set(steps))


def test_killing_any_rank_ends_the_job_quickly_five_times(tmp_path):
    """SIGKILL one rank of a 4-rank run at a random point; the launcher must end the job."""
    rng = random.Random(5)
    took = []
    for attempt in range(5):
        run = tmp_path / f"run{attempt}"
        proc = start_job(["mpirl.train", "--total-steps", "10000000", "--checkpoint-every", "20",
                          "--learners", str(rng.choice([1, 2])), "--quiet",
                          "--no-tensorboard", "--run-dir", str(run)], ranks=4)
        wait_for_checkpoint(proc, run)
        time.sleep(rng.uniform(0.0, 2.0))
        victim = rng.randrange(4)
        os.kill(rank_pids(proc)[victim], signal.SIGKILL)
        start = time.monotonic()
        code, _, err = finish(proc, timeout=30)
        took.append(time.monotonic() - start)
        assert code != 0, err
    print(f"job end after SIGKILL of one rank: max {max(took):.2f} s, "
          f"mean {sum(took) / len(took):.2f} s")


@pytest.mark.parametrize("rank,learners,role,tensorboard", [
    (3, 1, "actor", "--no-tensorboard"), (0, 1, "learner", "--no-tensorboard"),
    (1, 2, "learner", "--no-tensorboard"), (0, 1, "learner", "--tensorboard")])
def test_an_exception_on_any_rank_ends_the_job_with_one_message(tmp_path, monkeypatch, rank,
                                                                 learners, role, tensorboard):
    """With TensorBoard's writer thread alive, MPICH's MPI_Abort returned once and main()
    went on to a second, misleading traceback."""
    monkeypatch.setenv("MPIRL_FAULT", f"raise@{rank}:30")
    start = time.monotonic()
    res = run_job(["mpirl.train", "--total-steps", "10000000", "--learners", str(learners),
                   "--quiet", tensorboard, "--run-dir", str(tmp_path / "run")],
                  ranks=4, timeout=120)
    assert res.returncode == exit_codes.FAILED, res.stderr
    assert (f"mpirl: rank {rank} ({role}) failed: InjectedFault: injected failure at update 30"
            in res.stderr)
    assert res.stderr.count("failed:") == 1 and res.stderr.count("Traceback") == 1, res.stderr
    assert time.monotonic() - start < 60


def _first_failure(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if " failed: " in line)


@pytest.mark.parametrize("ranks,learners,hung,reporter", [(3, 1, 2, 0), (4, 2, 3, 1),
                                                          (4, 2, 2, 0)])
def test_a_hung_rank_is_named_first_by_the_comm_timeout(tmp_path, monkeypatch, ranks, learners,
                                                        hung, reporter):
    """The rank waiting on the hung actor speaks first: the other learner waits on it at the
    allreduce, and actors wait on their learners, each with more patience."""
    monkeypatch.setenv("MPIRL_FAULT", f"hang@{hung}:30")
    start = time.monotonic()
    res = run_job(["mpirl.train", "--total-steps", "10000000", "--comm-timeout", "3",
                   "--learners", str(learners), "--quiet", "--no-tensorboard",
                   "--run-dir", str(tmp_path / "run")], ranks=ranks, timeout=120)
    assert res.returncode == exit_codes.FAILED
    assert _first_failure(res.stderr).startswith(
        f"mpirl: rank {reporter} (learner) failed: CommTimeout: waited 3 s (--comm-timeout 3) "
        f"for rollouts from rank {hung};"), res.stderr
    assert time.monotonic() - start < 60


def test_a_hung_a3c_worker_is_noticed_while_the_others_keep_the_server_busy(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("MPIRL_FAULT", "hang@3:30")
    start = time.monotonic()
    res = run_job(["mpirl.train", "--algo", "a3c", "--total-steps", "10000000",
                   "--comm-timeout", "3", "--quiet", "--no-tensorboard",
                   "--run-dir", str(tmp_path / "run")], ranks=4, timeout=120)
    assert res.returncode == exit_codes.FAILED
    assert _first_failure(res.stderr).startswith(
        "mpirl: rank 0 (server) failed: CommTimeout: heard nothing for 3 s (--comm-timeout 3) "
        "from rank 3"), res.stderr
    assert time.monotonic() - start < 60


def test_a_stop_signal_ends_a_job_whose_ranks_wait_on_a_hung_peer(tmp_path, monkeypatch):
    """No --comm-timeout: without the stop, the job would wait forever."""
    from mpirl.comm import STOP_GRACE_S
    monkeypatch.setenv("MPIRL_FAULT", "hang@2:30")
    run = tmp_path / "run"
    proc = start_job(["mpirl.train", "--total-steps", "10000000", "--checkpoint-every", "20",
                      "--quiet", "--no-tensorboard", "--run-dir", str(run)], ranks=3)
    wait_for_checkpoint(proc, run)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    code, _, err = finish(proc, timeout=120)
    assert code == exit_codes.FAILED, err
    assert _first_failure(err).startswith(
        "mpirl: rank 0 (learner) failed: CommTimeout: a stop signal (SIGTERM) came"), err
    assert "still waits for rollouts from rank 2" in err
    assert time.monotonic() - start < STOP_GRACE_S + 15


def test_a_stop_signal_during_start_up_still_stops_at_a_checkpoint(tmp_path):
    """The handlers are installed before the imports (seconds of torch), so the run stops at
    a checkpoint with the code mpirl.requeue requeues on, rather than dying of the signal."""
    run = tmp_path / "run"
    proc = start_job(["mpirl.train", "--total-steps", "10000000", "--quiet",
                      "--no-tensorboard", "--run-dir", str(run)], ranks=3)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == exit_codes.PREEMPTED, err
    assert list((run / "checkpoints").glob("*.ckpt"))


def test_a_stop_signal_during_an_evaluation_gives_it_up_and_the_resumed_run_evaluates_first(
        tmp_path):
    """Pendulum episodes that never end make the lead's first evaluation endless: a stop
    signal must still end the job at once with a checkpoint (the other learners would give up
    waiting for the evaluation after the stop's grace and end the job without one), and the
    resumed run (with episodes of the usual length) does that evaluation and writes its row
    before it trains on."""
    from mpirl.comm import STOP_GRACE_S
    run = tmp_path / "run"
    args = ["--algo", "ppo", "--env", "Pendulum-v1", "--envs-per-actor", "2", "--n-steps",
            "128", "--log-every", "1024", "--eval-every", "2048", "--eval-episodes", "2",
            "--total-steps", "6144", "--quiet", "--no-tensorboard"]  # 512 steps an iteration
    proc = start_job(["mpirl.train", *args, "--env-kwargs", '{"max_episode_steps": 1000000000}',
                      "--run-dir", str(run)], ranks=3)
    deadline = time.monotonic() + 120
    while not (run / "progress.csv").exists() or not learning_rows(run):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no first progress row: {proc.communicate()}")
        time.sleep(0.2)
    time.sleep(5.0)  # the next iteration ends at 2,048 steps: the evaluation that never ends
    assert [r["env_steps"] for r in learning_rows(run)] == ["1024"]
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    code, _, err = finish(proc)
    assert code == exit_codes.PREEMPTED, err
    assert time.monotonic() - start < STOP_GRACE_S
    assert "stopped by a stop signal" in err and "at env step 2,048" in err, err

    res = run_job(["mpirl.train", "--resume", str(run), "--override", "env_kwargs",
                   "--env-kwargs", "{}"], ranks=3)
    assert res.returncode == 0, res.stderr
    rows = learning_rows(run)
    assert [r["env_steps"] for r in rows] == ["1024", "2048", "3072", "4096", "5120", "6144"]
    evaluated = [r["env_steps"] for r in rows if r["eval_return_mean"]]
    assert evaluated == ["2048", "4096", "6144"]


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIRL_FAULT", "nan@1:25")  # the second learner's data goes bad
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--learners", "2", "--total-steps", "100000",
                   "--checkpoint-every", "10", "--envs-per-actor", "4", "--quiet",
                   "--no-tensorboard", "--run-dir", str(run)], ranks=4)
    assert res.returncode == exit_codes.DIVERGED, res.stderr
    newest = sorted((run / "checkpoints").glob("ckpt-*.ckpt"))[-1]
    assert "NaN/Inf in update 26" in res.stderr and f"Newest good checkpoint: {newest}" in \
        res.stderr
    assert newest.name == f"ckpt-{20 * 2 * 4 * 5:012d}.ckpt"  # update 20, before the bad one

    monkeypatch.setenv("MPIRL_FAULT", "nan@0:5")
    run = tmp_path / "skip"
    res = run_job(["mpirl.train", "--nonfinite", "skip", "--total-steps", "4000",
                   "--envs-per-actor", "4", "--quiet", "--no-tensorboard",
                   "--run-dir", str(run)], ranks=2)
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_updates"] == 1
    assert learning_rows(run)[-1]["skipped_updates"] == "1"


def test_checkpoints_by_time_and_a_stop_signal_without_mpirun(tmp_path):
    run = tmp_path / "run"
    proc = start_job(["mpirl.train", "--total-steps", "10000000", "--checkpoint-minutes",
                      "0.005", "--keep-checkpoints", "100", "--quiet", "--no-tensorboard",
                      "--run-dir", str(run)])
    wait_for_checkpoint(proc, run)
    deadline = time.monotonic() + 60
    while len(list((run / "checkpoints").glob("*.ckpt"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == exit_codes.PREEMPTED, err
    assert len(list((run / "checkpoints").glob("*.ckpt"))) >= 4  # 3+ by time, 1 at the signal
    res = run_job(["mpirl.evaluate", str(run), "--episodes", "2", "--json"])
    assert res.returncode == 0, res.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB file system of its own (tmpfs; needs the right to mount, as root in CI)."""
    import subprocess
    disk = tmp_path / "disk"
    disk.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {res.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk):
    """Write a file until the disk is full; returns it."""
    filler = disk / "filler"
    # unbuffered: a buffered file's close would flush what the full disk refused, and raise
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_run_naming_the_last_good_checkpoint(small_disk):
    run = small_disk / "run"
    proc = start_job(["mpirl.train", "--total-steps", "10000000", "--checkpoint-every", "10",
                      "--log-every", "500", "--quiet", "--run-dir", str(run)], ranks=3)
    wait_for_checkpoint(proc, run)
    filler = _fill(small_disk)
    code, _, err = finish(proc, timeout=60)
    assert code == exit_codes.FAILED, err
    first = err.splitlines()[0]
    assert first.startswith("mpirl: error: no space left to write "), err
    newest = sorted((run / "checkpoints").glob("ckpt-*.ckpt"))[-1]
    assert f"Newest good checkpoint: {newest}." in first and f"--resume {run}" in first
    assert not [p.name for p in run.rglob("*.tmp")], "a failed write left its temporary file"
    # with space again, the run continues from that checkpoint
    filler.unlink()
    steps = int(newest.name[5:-5])
    res = run_job(["mpirl.train", "--resume", str(run), "--total-steps", str(steps + 4000),
                   "--override", "total-steps"], ranks=3)
    assert res.returncode == 0, res.stderr
    assert f"resuming from {newest}" in res.stderr
