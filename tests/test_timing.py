"""The time breakdown: the stopwatch, the per-role table, and its verdict on real runs whose
bottleneck is known."""
import json
import time

import numpy as np

from mpirl.runtime import timing

from helpers import run_job


def test_the_stopwatch_charges_time_to_the_activity_that_ran():
    watch = timing.Stopwatch()
    watch.reset("env")
    time.sleep(0.05)
    watch.switch("gradient")
    time.sleep(0.02)
    totals = dict(zip(timing.CATEGORIES, watch.snapshot()))
    assert 0.045 < totals["env"] < 0.2 and 0.015 < totals["gradient"] < 0.2
    assert sum(totals.values()) == totals["env"] + totals["gradient"]
    off = timing.Stopwatch(enabled=False)
    off.switch("env")
    assert not off.snapshot().any()


def _totals(**seconds) -> np.ndarray:
    out = np.zeros(len(timing.CATEGORIES))
    for k, v in seconds.items():
        out[timing.CATEGORIES.index(k)] = v
    return out


def test_breakdown_gives_role_means_maxima_and_the_slowest_rank():
    totals = {0: _totals(gradient=6, wait_rollouts=4), 1: _totals(env=9, wait_weights=1),
              2: _totals(env=5, wait_weights=5)}
    roles = {0: "learner", 1: "actor", 2: "actor"}
    table = timing.breakdown(totals, roles)
    assert table["learner"]["categories"]["gradient"]["share"] == 0.6
    wait = table["actor"]["categories"]["wait_weights"]
    assert wait["share"] == 0.3 and wait["max_share"] == 0.5 and wait["slowest_rank"] == 2
    text = timing.format_table(table, 10.0)
    assert "max 50.0% on rank 2" in text and "verdict:" in text


def _job_verdict(tmp_path, *args) -> list[str]:
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--eval-every", "0", "--eval-episodes", "1",
                   "--no-tensorboard", "--run-dir", str(run), *args], ranks=3)
    assert res.returncode == 0, res.stderr
    assert "where the time went" in res.stdout
    return json.loads((run / "timing.json").read_text())["verdict"]


def test_slow_envs_make_the_learners_wait_on_actors(tmp_path):
    verdict = _job_verdict(tmp_path, "--env", "envs_for_tests:SlowCartPole",
                           "--envs-per-actor", "4", "--total-steps", "3000")
    assert verdict[0].startswith("learners wait on actors"), verdict


def test_a_large_model_makes_gradient_work_dominate(tmp_path):
    verdict = _job_verdict(tmp_path, "--hidden-sizes", "1024", "1024", "--envs-per-actor", "32",
                           "--n-steps", "16", "--total-steps", "8000")
    gradient = [v for v in verdict if v.startswith("gradient work dominates the learners")]
    assert gradient and "--device cuda" in gradient[0], verdict
    assert "more samples per update (--envs-per-actor, --n-steps)" in gradient[0]
    assert verdict[0].startswith("actors wait"), verdict


def test_the_quick_start_verdict_gives_advice_that_fits_a_small_model(tmp_path):
    """PPO on CartPole: 20 epochs of minibatch updates on a 9k-parameter MLP. The cure is
    fewer updates, not a GPU."""
    verdict = _job_verdict(tmp_path, "--algo", "ppo", "--total-steps", "8000")
    gradient = [v for v in verdict if v.startswith("gradient work dominates the learners")]
    assert gradient, verdict
    assert "fewer --n-epochs" in gradient[0] and "a GPU would not speed it up" in gradient[0]
    assert "--device cuda" not in " ".join(verdict)


def test_the_arithmetic_of_an_update_decides_whether_a_gpu_would_help():
    """A trainer that says how much arithmetic an update is (parameters x samples) is judged
    by that, not by the policy's size: SAC's 67k-parameter policy comes with twin critics
    (200k parameters in all). On 128 samples per learner an H200 took longer per update than
    one CPU core (5.3 against 4.7 ms); on 512, a GPU pays."""
    from mpirl.runtime.timing import verdict
    table = {"learner+actor": {"ranks": 2, "categories": {"gradient": {"share": 0.9}}}}
    assert "a GPU would not speed it up" in verdict(table, n_params=67_000)[0]
    sac = verdict(table, n_params=67_000, update_work=200_000 * 128)[0]
    assert "25.6M multiply-adds per update" in sac and "a GPU would not" in sac
    assert "--device cuda" in verdict(table, n_params=67_000, update_work=200_000 * 512)[0]
    small = verdict(table, n_params=17_000, update_work=17_000 * 256)[0]
    assert "4.4M multiply-adds per update" in small and "a GPU would not" in small
