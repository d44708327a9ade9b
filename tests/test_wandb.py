"""--wandb offline, as on a compute node without network: the W&B run in RUN_DIR/wandb holds the
config, the progress rows, the evaluations and the videos, is named after the run directory,
grouped by the SLURM job array, and a resumed run continues the same W&B run."""
import pytest

from helpers import run_job

pytest.importorskip("wandb")
pytest.importorskip("imageio_ffmpeg")


def _records(run):
    [path] = (run / "wandb").glob("offline-run-*/run-*.wandb")
    return path, path.read_bytes()


def test_an_offline_run_records_config_rows_evaluations_and_videos(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "7777")
    run = tmp_path / "cartpole-wandb"
    res = run_job(["mpirl.train", "--total-steps", "20000", "--eval-every", "10000",
                   "--log-every", "5000", "--video-every", "1", "--wandb", "--seed", "31",
                   "--quiet", "--no-tensorboard", "--run-dir", str(run)], ranks=2)
    assert res.returncode == 0, res.stderr
    path, data = _records(run)
    run_id = (run / "wandb-id").read_text()
    assert path.name == f"run-{run_id}.wandb"
    for text in (b"cartpole-wandb", b"7777", b"total_steps", b"seed", b"31",
                 b"episode_return_mean", b"eval_return_mean", b"allreduce_bytes_per_step"):
        assert text in data, text
    assert data.count(b"episode_return_mean") >= 4  # one per progress row
    videos = list(path.parent.glob("files/media/videos/*.mp4"))
    assert len(videos) == 2  # one per evaluation
    # resumed, the same W&B run goes on
    res = run_job(["mpirl.train", "--resume", str(run), "--total-steps", "25000", "--override",
                   "total-steps"], ranks=2)
    assert res.returncode == 0, res.stderr
    runs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)

