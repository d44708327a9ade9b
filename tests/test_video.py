"""Videos of the policy: ``mpirl.evaluate --video`` writes an MP4 of each evaluation episode
(the same episodes and returns as without it), ``--video-every`` one per so many evaluations
during training, from the lead only."""
import json

import numpy as np
import pytest

from helpers import run_job

imageio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")


def _frames(path):
    reader = imageio.get_reader(path)
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("video") / "run"
    res = run_job(["mpirl.train", "--total-steps", "20000", "--eval-every", "5000",
                   "--video-every", "2", "--quiet", "--no-tensorboard", "--run-dir", str(run)],
                  ranks=2)
    assert res.returncode == 0, res.stderr
    return run


def test_evaluate_writes_a_video_of_each_episode(cartpole_run, tmp_path):
    res = run_job(["mpirl.evaluate", str(cartpole_run), "--episodes", "3", "--json",
                   "--video", str(tmp_path / "videos")])
    assert res.returncode == 0, res.stderr
    with_video = json.loads(res.stdout.splitlines()[-1])
    res = run_job(["mpirl.evaluate", str(cartpole_run), "--episodes", "3", "--json"])
    assert with_video["returns"] == json.loads(res.stdout)["returns"]  # the same episodes
    for i, ret in enumerate(with_video["returns"]):
        frames = _frames(tmp_path / "videos" / f"episode-{i}.mp4")
        # CartPole pays 1 a step: the first frame, then one after each step but the last
        # (whose env has started its next episode)
        assert len(frames) == ret
        assert frames[0].shape == (400, 600, 3) and frames[0].std() > 0


def test_training_records_every_other_evaluation(cartpole_run):
    videos = sorted(p.name for p in (cartpole_run / "videos").glob("*.mp4"))
    assert videos == ["eval-000000010000.mp4", "eval-000000020000.mp4"]
    assert len(_frames(cartpole_run / "videos" / videos[-1])) > 1


def test_atari_videos_show_the_game_screen(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from mpirl.acting.envs import EnvRef, describe_env, make_env
    from mpirl.acting.video import record_episodes
    from mpirl.config.sources import parse_config
    cfg = parse_config(["--config", "presets/ppo-atari.yaml"])
    env = EnvRef(cfg.env, {"max_episode_steps": 200})  # 200 frames, 50 agent steps
    model = cfg.algorithm.policy(cfg, describe_env(make_env(env), cfg.env))
    [(path, _)] = record_episodes(model, env, 1, seed=0, out_dir=tmp_path)
    frames = _frames(path)
    # colour, not the 84x84 grey the policy sees; no-ops at reset use some of the 200 frames
    assert 30 < len(frames) <= 51 and frames[0].shape == (210, 160, 3)


@pytest.mark.parametrize("env_id,module,shape", [("Hopper-v5", "mujoco", (480, 480, 3)),
                                                 ("LunarLander-v3", "Box2D", (400, 600, 3))])
def test_mujoco_and_box2d_videos(tmp_path, env_id, module, shape):
    pytest.importorskip(module)
    from mpirl.acting.envs import EnvRef, describe_env, make_env
    from mpirl.acting.video import record_episodes
    from mpirl.config.sources import parse_config
    cfg = parse_config(["--algo", "ppo", "--env", env_id])
    env = EnvRef(env_id, {"max_episode_steps": 30})
    model = cfg.algorithm.policy(cfg, describe_env(make_env(env), env_id))
    [(path, _)] = record_episodes(model, env, 1, seed=0, out_dir=tmp_path)
    frames = _frames(path)
    assert 1 < len(frames) <= 30 and frames[0].shape == shape and frames[0].std() > 0
