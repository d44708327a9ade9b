"""PPO as whole jobs: exact resume with normalization statistics, evaluation with the saved
statistics, Atari and MuJoCo end to end. Every job runs with a timeout."""
import json

import pytest
import torch

from mpirl.acting.envs import describe_env, make_env
from mpirl.acting.evaluation import evaluate_policy
from mpirl.files.rundir import RunDir

from helpers import learning_rows, run_job, same_weights, whole_and_resumed

PENDULUM = ["--algo", "ppo", "--env", "Pendulum-v1", "--total-steps", "30720",
            "--envs-per-actor", "2", "--n-steps", "64", "--batch-size", "128", "--n-epochs",
            "2", "--normalize-obs", "--normalize-reward", "--log-every", "2048",
            "--eval-every", "10240", "--eval-episodes", "2", "--checkpoint-every", "20",
            "--seed", "5", "--quiet", "--no-tensorboard"]


def test_a_stopped_and_resumed_normalized_ppo_run_ends_like_an_uninterrupted_one(tmp_path):
    whole, parts = whole_and_resumed(tmp_path, PENDULUM, 30720)
    # the same rows (statistics, reward scale, KL, evaluations) and the same final weights,
    # normalizer included
    assert learning_rows(parts) == learning_rows(whole)
    assert same_weights(parts, whole)
    assert "normalizer.mean" in torch.load(whole / "policy.pt", weights_only=True)


def test_an_observation_normalized_policy_evaluates_with_its_saved_statistics(tmp_path):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "ppo", "--normalize-obs", "--total-steps", "40000",
                   "--run-dir", str(run), "--quiet", "--no-tensorboard"], ranks=2, timeout=180)
    assert res.returncode == 0, res.stderr
    res = run_job(["mpirl.evaluate", str(run), "--episodes", "5", "--json"])
    assert res.returncode == 0, res.stderr
    evaluated = json.loads(res.stdout)
    assert evaluated["return_mean"] >= 100, evaluated  # it learned: random play lasts ~22 steps
    # the evaluation is the saved policy with its statistics, episode for episode
    cfg = RunDir(run).load_config()
    model = cfg.algorithm.policy(cfg, describe_env(make_env(cfg.env)))
    model.load_state_dict(torch.load(run / "policy.pt", weights_only=True))
    assert model.normalizer.var.min() < 0.1  # the pole's angle varies little
    assert evaluate_policy(model, cfg.env, 5, seed=12345) == evaluated["returns"]
    # and not the same weights on raw observations: those play other episodes
    with torch.no_grad():
        model.normalizer.mean.zero_()
        model.normalizer.var.fill_(1.0)
    assert evaluate_policy(model, cfg.env, 5, seed=12345) != evaluated["returns"]


def test_atari_runs_end_to_end_with_the_nature_cnn(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--config", "presets/ppo-atari.yaml", "--total-steps", "1024",
                   "--envs-per-actor", "2", "--n-steps", "64", "--batch-size", "128",
                   "--n-epochs", "1", "--eval-every", "0", "--eval-episodes", "1",
                   "--run-dir", str(run), "--quiet", "--no-tensorboard"], ranks=3, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 1024
    # the evaluation played a whole game, which an untrained agent loses by many points to the
    # built-in opponent's 21 (a game cut short at the first points would score near 0)
    assert summary["final_eval_return"] <= -10, summary
    weights = torch.load(run / "policy.pt", weights_only=True)
    assert weights["trunk.0.weight"].shape == (32, 4, 8, 8)  # the Nature CNN on 4 frames
    # and the trunk trained (in bfloat16 where this CPU computes it natively): its first
    # convolution moved from its initial weights
    cfg = RunDir(run).load_config()
    torch.manual_seed(cfg.seed)
    initial = cfg.algorithm.policy(cfg, describe_env(make_env(cfg.env)))
    assert cfg.precision == "auto"
    assert not torch.equal(weights["trunk.0.weight"], initial.trunk[0].weight.detach())


def test_mujoco_runs_end_to_end(tmp_path):
    pytest.importorskip("mujoco")
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--config", "presets/ppo-halfcheetah.yaml", "--total-steps",
                   "4096", "--n-steps", "256", "--eval-every", "0", "--eval-episodes", "1",
                   "--run-dir", str(run), "--quiet", "--no-tensorboard"], ranks=3, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 4096
    assert "normalizer.mean" in torch.load(run / "policy.pt", weights_only=True)
