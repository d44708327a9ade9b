"""IMPALA as whole jobs: actors that do not wait, learners that stay identical, the policy
lag reported and bounded, drained checkpoints that lose no unroll, stop and resume, hung and
killed ranks."""
import json
import os
import random
import signal
import time

import pytest

from mpirl.files.checkpoint import CheckpointStore
from mpirl.runtime import exit_codes

from helpers import (assert_agree_every, finish, learner_lines, progress_rows, rank_pids, run_job,
                     start_job, wait_for_checkpoint)

QUIET = ["--quiet", "--no-tensorboard"]


def test_learners_stay_identical_while_their_actors_run_freely(tmp_path, monkeypatch):
    """2 learners and 6 actors: after every update both learners hold the same weights, and
    the policy lag of the unrolls they trained on is reported and bounded."""
    monkeypatch.setenv("MPIRL_PLUGINS", "plugins.impala_digests")
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "impala_digests", "--learners", "2",
                   "--total-steps", "120000", "--log-every", "10000", "--eval-every", "0",
                   "--run-dir", str(run), *QUIET], ranks=8, timeout=180)
    assert res.returncode == 0, res.stderr
    first = (run / "weights-0.txt").read_text().splitlines()
    second = (run / "weights-1.txt").read_text().splitlines()
    assert len(first) == 120000 // (2 * 2 * 32 * 8) + 1 and first == second
    assert len({line.split()[1] for line in first}) == len(first)  # the weights did change
    rows = progress_rows(run)
    lags = [float(r["policy_lag_max"]) for r in rows]
    means = [float(r["policy_lag_mean"]) for r in rows]
    # each learner holds at most one unroll per actor beyond those in flight
    assert all(0 <= m <= x <= 12 for m, x in zip(means, lags)), rows
    assert max(lags) >= 1  # the actors did act with older weights
    timing = json.loads((run / "timing.json").read_text())["breakdown"]
    assert "wait_weights" not in timing["actor"]["categories"] or \
        timing["actor"]["categories"]["wait_weights"]["share"] < 0.2


def test_with_model_averaging_the_learners_agree_every_k_updates_only(tmp_path, monkeypatch):
    """--sync average --average-every 4: each learner updates from its own actors' unrolls and
    the two hold the same weights right after every fourth update only."""
    monkeypatch.setenv("MPIRL_PLUGINS", "plugins.impala_digests")
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "impala_digests", "--learners", "2", "--sync",
                   "average", "--average-every", "4", "--total-steps", "40000",
                   "--eval-every", "0", "--run-dir", str(run), *QUIET], ranks=6, timeout=180)
    assert res.returncode == 0, res.stderr
    first, second = learner_lines(run, "weights")
    assert len(first) == len(second) > 20
    assert_agree_every(first, second, 4)


def test_unrolls_older_than_the_lag_limit_are_dropped_and_counted(tmp_path):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "impala", "--max-policy-lag", "2",
                   "--total-steps", "60000", "--log-every", "10000", "--eval-every", "0",
                   "--run-dir", str(run), *QUIET], ranks=4, timeout=180)
    assert res.returncode == 0, res.stderr
    rows = progress_rows(run)
    assert max(float(r["policy_lag_max"]) for r in rows) <= 2
    assert float(rows[-1]["dropped_unrolls"]) > 0


def test_a_stopped_run_checkpoints_a_consistent_cut_and_resumes(tmp_path):
    """SIGTERM: the actors hand in every unroll they sent before the checkpoint; each is
    either trained on or saved with it (none lost, none counted twice), the job exits 3, and
    --resume trains to the budget."""
    run = tmp_path / "run"
    args = ["mpirl.train", "--algo", "impala", "--total-steps", "3000000", "--eval-every", "0",
            "--checkpoint-every", "50", "--run-dir", str(run), *QUIET]
    proc = start_job(args, ranks=4)
    wait_for_checkpoint(proc, run)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == exit_codes.PREEMPTED, err
    for checkpoint in CheckpointStore(run / "checkpoints").paths():
        ranks = CheckpointStore.read(checkpoint).ranks
        learner, actors = ranks[0], ranks[1:]
        assert learner["received"] == sum(a["sent"] for a in actors)
        assert learner["received"] + learner["restored"] == (learner["taken"]
                                                             + len(learner["pending"]))
    stopped_at = int(progress_rows(run)[-1]["env_steps"])
    assert stopped_at < 3000000
    res = run_job(["mpirl.train", "--resume", str(run), "--override", "total_steps",
                   "--total-steps", str(stopped_at + 40000)], ranks=4)
    assert res.returncode == 0, res.stderr
    assert "resuming from" in res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed"] == 1 and summary["env_steps"] >= stopped_at + 40000
    steps = [int(r["env_steps"]) for r in progress_rows(run)]
    assert steps == sorted(set(steps))


def test_short_runs_in_a_row_all_end_cleanly(tmp_path):
    """8 ranks, 1 or 2 learners, checkpoints (each a drain of every actor) every few updates:
    every job ends with code 0, nothing left in flight at MPI_Finalize. (Two, one per learner
    count, keep the suite short; twenty in a row passed too.)"""
    for i in range(2):
        run = tmp_path / f"run{i}"
        learners = 1 + i % 2
        res = run_job(["mpirl.train", "--algo", "impala", "--learners", str(learners),
                       "--envs-per-actor", "8", "--total-steps", "20000", "--eval-every",
                       "10000", "--eval-episodes", "2", "--checkpoint-every", "7", "--seed",
                       str(i), "--run-dir", str(run), *QUIET], ranks=8, timeout=60)
        assert res.returncode == 0, f"run {i} ({learners} learners): {res.stderr}"
        assert json.loads((run / "summary.json").read_text())["env_steps"] >= 20000


def test_a_hung_actor_is_noticed_while_the_others_keep_its_learner_busy(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("MPIRL_FAULT", "hang@2:30")
    start = time.monotonic()
    res = run_job(["mpirl.train", "--algo", "impala", "--total-steps", "100000000",
                   "--comm-timeout", "3", "--run-dir", str(tmp_path / "run"), *QUIET],
                  ranks=4, timeout=120)
    assert res.returncode == exit_codes.FAILED
    first = next(line for line in res.stderr.splitlines() if " failed: " in line)
    assert first.startswith("mpirl: rank 0 (learner) failed: CommTimeout: heard nothing for 3 s "
                            "(--comm-timeout 3) from rank 2"), res.stderr
    assert time.monotonic() - start < 60


def test_killing_any_rank_ends_the_job(tmp_path):
    rng = random.Random(11)
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        proc = start_job(["mpirl.train", "--algo", "impala", "--total-steps", "100000000",
                          "--checkpoint-every", "100", "--learners", str(1 + attempt % 2),
                          "--run-dir", str(run), *QUIET], ranks=4)
        wait_for_checkpoint(proc, run)
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(rank_pids(proc)[rng.randrange(4)], signal.SIGKILL)
        code, _, err = finish(proc, timeout=30)
        assert code != 0, err


def test_one_process_acts_and_learns_alone(tmp_path):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "impala", "--total-steps", "20000",
                   "--run-dir", str(run), *QUIET])
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 20000 and summary["actors"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_impala_solves_cartpole(tmp_path, seed):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "impala", "--seed", str(seed), "--target-return",
                   "475", "--run-dir", str(run), *QUIET], ranks=4, timeout=300)
    assert res.returncode == 0, res.stderr
    evals = [float(r["eval_return_mean"]) for r in progress_rows(run) if r["eval_return_mean"]]
    assert max(evals) >= 400, evals
