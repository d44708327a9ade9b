"""The Python API: ``from mpirl import train`` in a script that is an MPI program itself, with
an env made by the user's own function; bad input raises ConfigError with the command line's
message."""
import json
import subprocess
import sys

from helpers import ROOT, _job_command
from mpirl.bench import find_mpirun


def _script(tmp_path, code: str, ranks: int | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(code)
    _, env = _job_command([], None)
    cmd = [sys.executable, str(path)]
    if ranks is not None:
        cmd = [find_mpirun(), "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=env)


def test_the_example_script_trains_under_mpirun_with_its_own_env(tmp_path):
    example = (ROOT / "examples" / "train_from_python.py").read_text()
    res = _script(tmp_path, example.replace("50_000", "6_000"), ranks=3)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "runs" / "from-python-6000"
    assert f"{run.relative_to(tmp_path)}: final evaluation return" in res.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 6000 and summary["world_size"] == 3
    # the env was the script's own, with its arguments: episodes end by 200 steps
    assert summary["final_eval_return"] <= 200
    config = (run / "config.yaml").read_text()
    assert "env: __main__:short_cartpole" in config and "max_episode_steps" in config


def test_bad_input_raises_config_error_with_the_command_lines_message(tmp_path):
    res = _script(tmp_path, """
from mpirl import train
from mpirl.config.fields import ConfigError
for bad in ({"algo": "ppo", "lr": -1.0}, {"algo": "dqn", "clip_range": 0.2}, {"nope": 1}):
    try:
        train(bad, total_steps=1000)
    except ConfigError as e:
        print("refused:", e)
""")
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("refused:")]
    assert len(lines) == 3, res.stdout
    assert "--lr must be" in lines[0]
    assert "--clip-range is an option of" in lines[1]
    assert "unknown config field 'nope'" in lines[2]
