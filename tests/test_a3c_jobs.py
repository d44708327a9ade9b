"""A3C jobs end to end, under mpirun with timeouts: bad input, progress columns, staleness
limits, 16 ranks on this machine, and many short runs in a row that must all end cleanly."""
import json
import os
import signal
import time

import pytest
import torch

from mpirl.runtime import exit_codes

from helpers import progress_rows, rank_pids, run_job, start_job

SHORT = ["mpirl.train", "--algo", "a3c", "--envs-per-actor", "4", "--eval-episodes", "2",
         "--quiet", "--no-tensorboard"]


@pytest.mark.parametrize("ranks,flags,message", [
    (3, ["--servers", "3"], "--servers 3 with 3 MPI rank(s) leaves no worker"),
    (2, ["--servers", "5"], "--servers 5 with 2 MPI rank(s) leaves no worker"),
    (2, ["--servers", "0"], "--servers must be positive, got 0"),
    (2, ["--max-staleness", "-1"], "--max-staleness must be >= 0"),
])
def test_bad_layout_is_reported_once_and_every_rank_exits_2(tmp_path, ranks, flags, message):
    res = run_job([*SHORT, "--run-dir", str(tmp_path / "run"), *flags], ranks=ranks,
                  timeout=60)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert res.stderr.count("mpirl: error:") == 1
    assert "Traceback" not in res.stderr


def test_two_servers_report_staleness_and_each_servers_rate(tmp_path):
    run = tmp_path / "run"
    loud = [a for a in SHORT if a != "--quiet"]
    res = run_job([*loud, "--servers", "2", "--total-steps", "6000", "--log-every", "1000",
                   "--eval-every", "3000", "--run-dir", str(run)], ranks=5, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 parameter server(s), 3 worker(s)" in res.stdout
    rows = progress_rows(run)
    assert {"staleness_mean", "staleness_max", "dropped_grads", "updates_per_s/server0",
            "updates_per_s/server1"} <= set(rows[0])
    assert sum(1 for r in rows if r["eval_return_mean"]) >= 2
    assert rows[-1]["eval_return_mean"]  # the last row holds the final evaluation
    s = json.loads((run / "summary.json").read_text())
    assert s["env_steps"] >= 6000 and s["servers"] == 2 and s["workers"] == 3
    # every gradient reaches both servers; none is dropped without a staleness limit
    assert s["dropped_grads"] == 0
    assert len(s["server_updates_per_s"]) == 2 and min(s["server_updates_per_s"]) > 0
    assert s["staleness_mean"] >= 0 and s["staleness_max"] >= 1


def test_sixteen_ranks_with_a_staleness_limit_drop_and_count(tmp_path):
    """16 ranks on 2 cores: 14 workers make gradients stale; --max-staleness 2 drops some,
    and progress.csv counts them."""
    run = tmp_path / "run"
    res = run_job([*SHORT, "--servers", "2", "--max-staleness", "2", "--total-steps", "20000",
                   "--log-every", "5000", "--eval-every", "0", "--run-dir", str(run)],
                  ranks=16, timeout=240)
    assert res.returncode == 0, res.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["workers"] == 14 and s["env_steps"] >= 20000
    assert s["dropped_grads"] > 0
    assert int(progress_rows(run)[-1]["dropped_grads"]) == s["dropped_grads"]
    assert s["staleness_max"] > 2  # measured on arrival, before the drop


def test_short_runs_in_a_row_all_end_cleanly(tmp_path):
    """No deadlock at shutdown: the stop reaches every worker, each says goodbye to every
    server, and MPI finalizes, every time. (Three, one per server count, keep the suite
    short; twenty in a row passed too.)"""
    for i in range(3):
        run = tmp_path / f"run{i}"
        servers = 1 + i % 3
        res = run_job([*SHORT, "--servers", str(servers), "--total-steps", "3000",
                       "--eval-every", "1000", "--seed", str(i), "--run-dir", str(run)],
                      ranks=8, timeout=60)
        assert res.returncode == 0, f"run {i} ({servers} servers): {res.stderr}"
        assert json.loads((run / "summary.json").read_text())["env_steps"] >= 3000


def test_the_parameter_server_is_generic_tabular_q_learning_on_taxi():
    """examples/tabular_q_server.py: a Q-table sharded over 2 servers, 2 workers pushing
    TD updates. A random Taxi policy scores about -200 per episode; a learned one about +8."""
    res = run_job(["examples.tabular_q_server", "--servers", "2"], ranks=4, timeout=180)
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if "greedy return" in ln][0]
    greedy = float(line.split("greedy return ")[1].split()[0])
    assert greedy > 5.0, line


# ------------------------------------------------------------------------------- failures
LONG = [*SHORT, "--total-steps", "10000000", "--run-dir"]


@pytest.mark.parametrize("rank,role", [(3, "worker"), (0, "server"), (1, "server")])
def test_an_exception_on_a_worker_or_server_ends_the_job_with_one_message(tmp_path, monkeypatch,
                                                                          rank, role):
    monkeypatch.setenv("MPIRL_FAULT", f"raise@{rank}:30")
    res = run_job([*LONG, str(tmp_path / "run"), "--servers", "2"], ranks=5, timeout=120)
    assert res.returncode == exit_codes.FAILED, res.stderr
    assert f"mpirl: rank {rank} ({role}) failed: InjectedFault" in res.stderr
    assert res.stderr.count("failed:") == 1


def test_a_nan_gradient_stops_the_run_with_exit_code_4(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIRL_FAULT", "nan@2:10")
    run = tmp_path / "run"
    res = run_job([*LONG, str(run)], ranks=3, timeout=120)
    assert res.returncode == exit_codes.DIVERGED, res.stderr
    assert "became NaN/Inf" in res.stderr
    assert torch.load(run / "policy.pt", weights_only=True)  # the last good weights


def test_a_stop_signal_checkpoints_and_the_run_resumes_on_another_server_count(tmp_path):
    """SIGTERM: every rank stops, the servers' slices and optimizer statistics and the
    workers' envs go into one checkpoint, exit 3. The resumed run (here with 2 servers
    instead of 1: the weights are sliced afresh) continues the counters and progress.csv."""
    run = tmp_path / "run"
    flags = [*SHORT, "--total-steps", "60000", "--log-every", "2000", "--eval-every", "20000",
             "--run-dir", str(run)]
    proc = start_job(flags, ranks=4)
    deadline = time.monotonic() + 60
    while not (run / "progress.csv").exists() or len(progress_rows(run)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_codes.PREEMPTED, err
    assert "stopped by a stop signal" in err and "--resume" in err
    assert (run / "policy.pt").exists()
    stopped_at = int(progress_rows(run)[-1]["env_steps"])
    assert stopped_at < 60000, "the signal came after the run's end"
    res = run_job(["mpirl.train", "--resume", str(run), "--servers", "2"], ranks=5,
                  timeout=120)
    assert res.returncode == 0, res.stderr
    assert "the checkpoint was taken on 4 rank(s)" in res.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["env_steps"] >= 60000 and s["resumed"] == 1 and s["servers"] == 2
    steps = [int(r["env_steps"]) for r in progress_rows(run)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_periodic_checkpoints_pause_the_workers_and_a_killed_job_resumes(tmp_path):
    """--checkpoint-every N: the lead pauses every worker, all ranks save, training goes on.
    After a worker is killed, the job ends and --resume continues from the newest
    checkpoint."""
    run = tmp_path / "run"
    flags = [*SHORT, "--servers", "2", "--total-steps", "60000", "--checkpoint-every", "60",
             "--log-every", "2000", "--eval-every", "0", "--run-dir", str(run)]
    proc = start_job(flags, ranks=5)
    deadline = time.monotonic() + 90
    while len(list((run / "checkpoints").glob("ckpt-*.ckpt"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(rank_pids(proc)[3], signal.SIGKILL)  # a worker
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    newest = sorted((run / "checkpoints").glob("ckpt-*.ckpt"))[-1]
    saved_at = int(newest.stem.split("-")[1])
    assert saved_at < 60000, "the kill came after the run's end"
    res = run_job(["mpirl.train", "--resume", str(run)], ranks=5, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"env step {saved_at:,}" in res.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["env_steps"] >= 60000 and s["resumed"] == 1
