"""PPO and IMPALA with random network distillation as whole jobs on MountainCar-v0: an exact
resume with RND's networks, optimizer and statistics in the checkpoint, progress columns, the
option refused where it does not apply, and a short learning check."""
import pytest

from helpers import evaluations, learning_rows, progress_rows, run_job, same_weights, \
    whole_and_resumed

QUIET = ["--quiet", "--no-tensorboard"]
SMALL = ["--algo", "ppo", "--env", "MountainCar-v0", "--intrinsic", "rnd", "--normalize-obs",
         "--envs-per-actor", "4", "--n-steps", "32", "--batch-size", "128", "--n-epochs", "2",
         "--rnd-init-steps", "16", "--eval-episodes", "2"]


def test_a_stopped_and_resumed_rnd_run_ends_like_an_uninterrupted_one(tmp_path):
    """The predictor, the target, their optimizer, the observation and intrinsic-return
    statistics, the running intrinsic returns and the mask stream are all checkpointed: the
    resumed run repeats the uninterrupted one, intrinsic rewards and predictor loss included."""
    args = [*SMALL, "--total-steps", "12288", "--log-every", "1024", "--eval-every", "6144",
            "--checkpoint-every", "20", "--seed", "6", *QUIET]
    whole, parts = whole_and_resumed(tmp_path, args, 12288)
    rows = learning_rows(whole)
    assert learning_rows(parts) == rows
    assert same_weights(parts, whole)
    assert all(float(r["intrinsic_reward"]) > 0 and float(r["rnd_loss"]) > 0 for r in rows)
    assert all(float(r["intrinsic_return_std"]) > 0 for r in rows)


def test_intrinsic_rewards_apply_to_ppo_and_impala(tmp_path):
    res = run_job(["mpirl.train", "--algo", "a2c", "--env", "MountainCar-v0", "--intrinsic",
                   "rnd", "--run-dir", str(tmp_path / "run"), *QUIET], ranks=2)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if "--intrinsic" in line]
    assert lines and "ppo" in lines[0] and "impala" in lines[0]


def test_impala_with_rnd_trains_on_unrolls_from_any_actor_and_resumes(tmp_path):
    """Two actors' unrolls, two to a batch in arrival order (often both from one actor): the
    learner keeps each actor's intrinsic returns apart, checkpoints them with the rest of RND,
    and a stopped run resumes to its end."""
    args = ["--algo", "impala", "--env", "MountainCar-v0", "--intrinsic", "rnd",
            "--envs-per-actor", "4", "--n-steps", "16", "--batch-unrolls", "2",
            "--rnd-init-steps", "8", "--total-steps", "16384", "--log-every", "2048",
            "--eval-every", "0", "--eval-episodes", "1", "--checkpoint-every", "40", *QUIET]
    whole, parts = whole_and_resumed(tmp_path, args, 16384)
    rows = progress_rows(whole)
    assert len(rows) >= 6
    assert all(float(r["intrinsic_reward"]) > 0 and float(r["rnd_loss"]) > 0 for r in rows)
    # the predictor learns: its error on what it sees falls
    assert float(rows[-1]["intrinsic_reward"]) < float(rows[0]["intrinsic_reward"])
    resumed = progress_rows(parts)
    assert int(resumed[-1]["env_steps"]) >= 16384
    assert all(float(r["intrinsic_return_std"]) > 0 for r in resumed)


def test_rnd_on_atari_frames_runs_end_to_end(tmp_path):
    pytest.importorskip("ale_py")
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "ppo", "--env", "ALE/Pong-v5", "--intrinsic", "rnd",
                   "--envs-per-actor", "2", "--n-steps", "16", "--batch-size", "32",
                   "--n-epochs", "1", "--rnd-init-steps", "8", "--total-steps", "128",
                   "--eval-every", "0", "--eval-episodes", "1", "--run-dir", str(run), *QUIET],
                  ranks=2, timeout=300)
    assert res.returncode == 0, res.stderr
    assert float(progress_rows(run)[-1]["intrinsic_reward"]) > 0


# with the preset, seeds 0-3 first evaluate above -200 at 300k-500k steps, and PPO without RND
# never reaches the flag in 1M (README); seed 2 gets there at 300k
@pytest.mark.slow
def test_rnd_reaches_the_mountain_car_flag_that_ppo_alone_does_not(tmp_path):
    common = ["mpirl.train", "--config", "presets/ppo-rnd-mountaincar.yaml", "--seed", "2",
              *QUIET]
    rnd, plain = tmp_path / "rnd", tmp_path / "plain"
    res = run_job([*common, "--target-return", "-190", "--run-dir", str(rnd)], ranks=4,
                  timeout=600)
    assert res.returncode == 0, res.stderr
    reached = evaluations(rnd)
    assert max(reached) > -200
    steps = int(progress_rows(rnd)[-1]["env_steps"])
    res = run_job([*common, "--intrinsic", "none", "--total-steps", str(steps), "--run-dir",
                   str(plain)], ranks=4, timeout=600)
    assert res.returncode == 0, res.stderr
    assert max(evaluations(plain)) == -200
    assert all(float(r["episode_return_mean"]) == -200 for r in progress_rows(plain))
