"""``python -m mpirl.evaluate`` on run directories that are damaged or hostile: one line on
stderr and exit 2, never a traceback, never code from the file run."""
import io
import os

import pytest
import torch

from mpirl.acting.envs import describe_env, make_env
from mpirl.config.schema import Config
from mpirl.evaluate import main as evaluate
from mpirl.files.rundir import RunDir


@pytest.fixture
def run(tmp_path):
    """A run directory with a config and freshly initialised policy weights."""
    cfg = Config(run_dir=str(tmp_path / "run"), hidden_sizes=[8])
    run = RunDir.create(cfg)
    run.save_config(cfg)
    env = make_env(cfg.env)
    run.save_policy(cfg.algorithm.policy(cfg, describe_env(env, cfg.env)))
    env.close()
    return run.path


def _error(capsys, argv) -> str:
    assert evaluate(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mpirl: error: "), err
    return err


def test_a_good_run_directory_evaluates(run, capsys):
    assert evaluate([str(run), "--episodes", "1"]) == 0
    assert "mean return" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["algo: [unclosed\n", "just a string\n", "lr: nan\n"])
def test_a_malformed_config_is_one_line(run, capsys, text):
    (run / "config.yaml").write_text(text)
    err = _error(capsys, [str(run)])
    assert "config.yaml" in err or "--lr" in err


def test_a_binary_config_is_one_line(run, capsys):
    (run / "config.yaml").write_bytes(bytes(range(256)))
    assert "not a readable run config" in _error(capsys, [str(run)])


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_policy_file_is_refused_without_advice_to_run_it(run, capsys, tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"pi.0.weight": _RunsCode(marker)}, buf)
    (run / "policy.pt").write_bytes(buf.getvalue())
    err = _error(capsys, [str(run)])
    assert "is not a plain tensor file" in err and "system" in err
    assert "weights_only" not in err and not marker.exists()


def test_damaged_or_mismatched_weights_are_one_line(run, capsys):
    (run / "policy.pt").write_bytes(b"\0" * 100)
    assert "policy.pt" in _error(capsys, [str(run)])
    torch.save({"something": torch.zeros(3)}, run / "policy.pt")
    assert "do not fit the run's policy" in _error(capsys, [str(run)])


def test_an_evaluation_is_given_up_as_soon_as_it_is_interrupted():
    """``evaluate_policy`` asks ``interrupt`` before every step and returns None once it says
    so (a stop signal must not wait for long episodes); never asked true, it evaluates as
    without it."""
    from mpirl.acting.evaluation import evaluate_policy
    cfg = Config(hidden_sizes=[8])
    env = make_env(cfg.env)
    policy = cfg.algorithm.policy(cfg, describe_env(env, cfg.env))
    env.close()
    asked = []

    def interrupt():
        asked.append(True)
        return len(asked) > 3

    assert evaluate_policy(policy, cfg.env, 2, seed=0, interrupt=interrupt) is None
    assert len(asked) == 4
    assert (evaluate_policy(policy, cfg.env, 2, seed=0, interrupt=lambda: False)
            == evaluate_policy(policy, cfg.env, 2, seed=0))
