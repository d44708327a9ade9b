"""It learns: A2C and DQN with their defaults on 4 ranks solve CartPole-v1 and stay solved."""
import json

import pytest

from conftest import run_job

pytestmark = pytest.mark.slow

# algorithm, its default budget in env steps
ALGOS = [("a2c", 300_000), ("dqn", 200_000)]


@pytest.mark.parametrize("algo", [a for a, _ in ALGOS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reaches_target_on_four_ranks(tmp_path, algo, seed):
    res = run_job(["mpirl.train", "--algo", algo, "--env", "CartPole-v1", "--seed", str(seed),
                   "--target-return", "475", "--run-dir", str(tmp_path), "--quiet",
                   "--no-tensorboard"], ranks=4, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["target_reached"], summary
    assert summary["final_eval_return"] >= 475


@pytest.mark.parametrize("algo,budget", ALGOS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stays_solved_to_the_default_budget(tmp_path, algo, budget, seed):
    res = run_job(["mpirl.train", "--algo", algo, "--seed", str(seed), "--run-dir",
                   str(tmp_path), "--quiet", "--no-tensorboard"], ranks=4, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] >= budget
    assert summary["final_eval_return"] >= 475, summary
