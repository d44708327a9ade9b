"""It learns: A2C, PPO, DQN and A3C with their defaults on 4 ranks solve CartPole-v1 and stay
solved; PPO's Pendulum preset solves Pendulum-v1.

One run per (algorithm, seed) to the default budget checks both claims: an evaluation reaches
475 (so ``--target-return 475`` stops there: A2C, PPO and DQN runs repeat exactly, and the
target-stop itself is tested in test_train_jobs), and the final evaluation is still >= 475;
for PPO, every evaluation of the second half of the budget.

(Runs repeat exactly on one machine, but float rounding differs between CPUs, and with it
the runs: PPO's seed 0 held >= 475 from its first 475 on one host and dipped to 446 once,
before holding 500, on another.)
"""
import csv
import json

import pytest

from helpers import run_job

pytestmark = pytest.mark.slow

# algorithm, its default budget in env steps, the seeds run (PPO, the quick-start algorithm
# and the cheapest run, on three; DQN, the slowest, on one)
RUNS = [("a2c", 300_000, 0), ("a2c", 300_000, 1), ("ppo", 100_000, 0), ("ppo", 100_000, 1),
        ("ppo", 100_000, 2), ("dqn", 200_000, 0), ("a3c", 300_000, 0), ("a3c", 300_000, 1)]


@pytest.mark.parametrize("algo,budget,seed", RUNS)
def test_reaches_475_and_stays_solved_to_the_default_budget(tmp_path, algo, budget, seed):
    res = run_job(["mpirl.train", "--algo", algo, "--seed", str(seed), "--run-dir",
                   str(tmp_path), "--quiet", "--no-tensorboard"], ranks=4, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] >= budget
    with open(tmp_path / "progress.csv") as f:
        evals = [float(r["eval_return_mean"]) for r in csv.DictReader(f)
                 if r["eval_return_mean"]]
    assert max(evals) >= 475, evals
    assert summary["final_eval_return"] >= 475, (summary, evals)
    if algo == "ppo":  # PPO's claim is the stronger one: it holds 475 to the end of the budget
        with open(tmp_path / "progress.csv") as f:
            late = [float(r["eval_return_mean"]) for r in csv.DictReader(f)
                    if r["eval_return_mean"] and int(r["env_steps"]) >= budget // 2]
        assert late and min(late) >= 475, evals


def test_ppo_preset_solves_pendulum_within_200k_steps(tmp_path):
    res = run_job(["mpirl.train", "--config", "presets/ppo-pendulum.yaml", "--run-dir",
                   str(tmp_path), "--quiet", "--no-tensorboard"], ranks=4, timeout=300)
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "progress.csv") as f:
        evals = [(int(r["env_steps"]), float(r["eval_return_mean"])) for r in csv.DictReader(f)
                 if r["eval_return_mean"]]
    assert evals[-1][0] <= 200_000 + 3 * 4 * 256
    assert max(mean for _, mean in evals) >= -200, evals
