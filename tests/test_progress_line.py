"""On an interactive terminal the lead shows one live progress line (env steps, steps per
second, time left, the latest returns) instead of progress rows; batch logs keep the rows."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from helpers import ROOT, _job_command


def _on_a_terminal(args: list[str]) -> str:
    """stdout of ``python -m mpirl.train args`` run on a pseudo-terminal of 120 x 40."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    _, env = _job_command([], None)
    proc = subprocess.Popen([sys.executable, "-m", "mpirl.train", *args], stdout=slave,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=ROOT,
                            env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=120) == 0
    os.close(master)
    return out.decode()


def test_a_terminal_gets_a_live_line_and_a_log_gets_rows(tmp_path):
    args = ["--total-steps", "20000", "--log-every", "5000", "--no-tensorboard",
            "--no-timing"]
    shown = _on_a_terminal([*args, "--run-dir", str(tmp_path / "tty")])
    assert "train return" not in shown  # no rows
    updates = shown.split("\r")
    live = [u for u in updates if "steps/s" in u and "return" in u and "eval" in u]
    assert len(live) >= 4, shown  # redrawn at every row, in place
    assert any("20.0k/20.0k" in u and "100%" in u for u in live), shown
    assert "done: 20,000 env steps" in shown
    res = subprocess.run([sys.executable, "-m", "mpirl.train", *args, "--run-dir",
                          str(tmp_path / "log")], capture_output=True, text=True, cwd=ROOT,
                         env=_job_command([], None)[1], timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("steps ")]
    assert len(rows) == 4 and "\r" not in res.stdout, res.stdout


def test_a_row_names_the_loss_the_algorithm_reports(tmp_path, capsys):
    """SAC, TD3 and D4PG report their critics' loss, not one "loss": the row shows that,
    never a column of nan."""
    from mpirl.files.logger import ProgressLogger
    from mpirl.files.rundir import RunDir
    log = ProgressLogger(RunDir(tmp_path), enabled=True, tensorboard=False, live=False)
    log.write({"env_steps": 1000, "sps": 50.0, "episode_return_mean": -900.0, "loss": 0.25})
    log.write({"env_steps": 2000, "sps": 50.0, "episode_return_mean": -800.0,
               "value_loss": 1.5, "policy_loss": 3.0})
    first, second = capsys.readouterr().out.splitlines()
    assert first.endswith("loss   0.2500") and "critic" not in first
    assert second.endswith("critic loss   1.5000") and "nan" not in second
