"""Checkpoints written before algorithms became plug-ins (state layout 1: the optimizer beside
the weights, the parameter servers' own counter names) still load: each run in
``data/checkpoints-v1`` (A2C on 1 rank, PPO with observation statistics, DQN and A3C on 2)
resumes from its saved weights and counters and trains on to a longer budget."""
import shutil

import pytest
import torch

from helpers import ROOT, progress_rows, run_job, summary

from mpirl.files.checkpoint import CheckpointStore

FIXTURES = ROOT / "tests" / "data" / "checkpoints-v1"
RUNS = [("a2c", None), ("ppo", 2), ("dqn", 2), ("a3c", 2)]


def _copy(tmp_path, algo: str):
    run = tmp_path / algo
    shutil.copytree(FIXTURES / algo, run)
    ckpt = CheckpointStore.read(next((run / "checkpoints").glob("*.ckpt")))
    assert "state_layout" not in ckpt.meta  # written by the earlier layout
    return run, ckpt


@pytest.mark.parametrize("algo,ranks", RUNS)
def test_a_layout_1_checkpoint_resumes_and_trains_on(tmp_path, algo, ranks):
    run, ckpt = _copy(tmp_path, algo)
    kept = [r for r in progress_rows(run) if int(r["env_steps"]) <= ckpt.env_steps]
    res = run_job(["mpirl.train", "--resume", str(run), "--total-steps", "4096",
                   "--override", "total-steps"], ranks=ranks, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"resuming from {ckpt.path}" in res.stderr
    s = summary(run)
    assert s["env_steps"] >= 4096 and s["resumed"] == 1
    rows = progress_rows(run)  # the old rows are kept (columns added since stay empty)
    assert [{k: r[k] for k in kept[0]} for r in rows[:len(kept)]] == kept
    assert int(rows[-1]["env_steps"]) >= 4096


@pytest.mark.parametrize("algo,ranks", [r for r in RUNS if r[0] != "a3c"])
def test_a_layout_1_checkpoint_restores_the_saved_weights(tmp_path, algo, ranks):
    """Resumed with nothing left to train, the run's final policy is the checkpoint's."""
    run, ckpt = _copy(tmp_path, algo)
    res = run_job(["mpirl.train", "--resume", str(run)], ranks=ranks, timeout=120)
    assert res.returncode == 0, res.stderr
    saved = torch.load(run / "policy.pt", weights_only=True)
    assert torch.equal(torch.cat([v.reshape(-1) for v in saved.values()]),
                       ckpt.shared["weights"])
