"""Model averaging (--sync average) and the straggler cut-off (--straggler-cutoff): rollouts cut
short are trained on exactly as if they had been collected that short, the options refuse what
they cannot do, and jobs run with them (the averaging collective itself is tested under mpirun
in test_model_averaging_mpi)."""
import csv
import json

import numpy as np
import pytest
import torch

from helpers import learning_rows, run_job, same_weights, whole_and_resumed
from mpirl.acting.envs import EnvSpec
from mpirl.algos.normalization import RolloutNormalization
from mpirl.algos.ppo.update import PPO
from mpirl.algos.returns import gae
from mpirl.comm import GradientAverager
from mpirl.config.fields import ConfigError
from mpirl.config.sources import parse_config
from mpirl.nets.actor_critic import ActorCritic

SPEC = EnvSpec((3,), np.dtype(np.float32), True, 2, None, None)


def _cut_batch(rng, T=8, lengths=(8, 3, 5, 1)):
    """A batch whose columns were cut after ``lengths`` steps: what lies past them is junk."""
    N = len(lengths)
    batch = {"obs": rng.normal(size=(T + 1, N, 3)).astype(np.float32),
             "actions": rng.integers(0, 2, (T, N)),
             "rewards": rng.normal(size=(T, N)).astype(np.float32),
             "dones": (rng.random((T, N)) < 0.25).astype(np.float32),
             "bootstrap": np.zeros((T, N), np.float32),
             "lengths": np.array(lengths)}
    for j, n in enumerate(lengths):
        batch["rewards"][n:, j] = 1e6
        batch["dones"][n:, j] = 1.0
        batch["obs"][n + 1:, j] = 1e6
    return batch


def test_rollouts_cut_short_give_the_advantages_of_the_shorter_rollouts():
    rng = np.random.default_rng(0)
    batch = _cut_batch(rng)
    T, N = batch["rewards"].shape
    values = rng.normal(size=(T + 1, N)).astype(np.float32)
    adv, ret = gae(batch["rewards"], values[:T], values[T], batch["dones"], 0.9, 0.8,
                   batch["lengths"])
    for j, n in enumerate(batch["lengths"]):
        # the reference: the rollout as collected, n steps, bootstrapped from step n's value
        ref_adv, ref_ret = gae(batch["rewards"][:n, j:j + 1], values[:n, j:j + 1],
                               values[n, j:j + 1], batch["dones"][:n, j:j + 1], 0.9, 0.8)
        np.testing.assert_allclose(adv[:n, j], ref_adv[:, 0], rtol=1e-6)
        np.testing.assert_allclose(ret[:n, j], ref_ret[:, 0], rtol=1e-6)
        assert (adv[n:, j] == 0).all()


def test_ppo_normalizes_and_trains_on_the_steps_collected_only():
    rng = np.random.default_rng(1)
    batch = _cut_batch(rng)
    T, N = batch["rewards"].shape
    cfg = parse_config(["--algo", "ppo", "--n-epochs", "2"])
    torch.manual_seed(0)
    model = ActorCritic(SPEC, [8])
    averager = GradientAverager(model.parameters(), None, extras=("approx_kl",))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ppo = PPO(cfg, model, averager, optimizer, minibatches=2)
    values = rng.normal(size=(T + 1, N)).astype(np.float32)
    adv, _ = ppo._advantages(batch, values)
    kept = np.concatenate([np.arange(n) * N + j for j, n in enumerate(batch["lengths"])])
    raw = np.concatenate([
        gae(batch["rewards"][:n, j:j + 1], values[:n, j:j + 1], values[n, j:j + 1],
            batch["dones"][:n, j:j + 1], cfg.gamma, cfg.gae_lambda)[0][:, 0]
        for j, n in enumerate(batch["lengths"])])
    expected = (raw - raw.mean()) / (raw.std() + 1e-8)
    np.testing.assert_allclose(np.sort(adv[kept]), np.sort(expected), rtol=1e-4, atol=1e-5)
    stats = ppo.update(batch, 0.2, np.random.default_rng(0))
    assert len(stats) == 4 and all(np.isfinite(s["loss"]) for s in stats)  # no junk used
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a2c_trains_on_rollouts_cut_short_as_on_the_rollouts_collected():
    """The A2C gradient of a batch with columns cut after 1-8 steps is the step-weighted mean
    of each column's gradient computed on that column as collected (its first n steps, the
    observation after them bootstrapping); the junk past the cuts changes nothing."""
    from types import SimpleNamespace

    from mpirl.algos.a2c.loss import A2C
    rng = np.random.default_rng(3)
    batch = _cut_batch(rng)
    cfg = SimpleNamespace(gamma=0.9, gae_lambda=0.8, vf_coef=0.5, ent_coef=0.01,
                          max_grad_norm=0.0)
    torch.manual_seed(0)
    model = ActorCritic(SPEC, [8])

    def gradient(part: dict) -> np.ndarray:
        averager = GradientAverager(model.parameters(), None)
        A2C(cfg, model, averager, None).gradient(part)
        return averager.flat.detach().numpy().copy()

    cut = gradient(batch)
    lengths = batch["lengths"]
    expected = sum(n / lengths.sum() * gradient(
        {"obs": batch["obs"][:n + 1, j:j + 1], "actions": batch["actions"][:n, j:j + 1],
         **{k: batch[k][:n, j:j + 1] for k in ("rewards", "dones", "bootstrap")}})
        for j, n in enumerate(lengths))
    np.testing.assert_allclose(cut, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(cut).sum() > 0


def test_normalization_counts_the_steps_collected_only():
    rng = np.random.default_rng(2)
    batch = _cut_batch(rng)
    T = batch["rewards"].shape[0]
    cfg = parse_config(["--algo", "ppo", "--normalize-obs", "--normalize-reward"])
    norm = RolloutNormalization(cfg, ActorCritic(SPEC, [8], obs_norm=True), None, streams=4)
    raw = batch["rewards"].copy()
    norm.prepare(batch)
    lengths = batch["lengths"]
    assert norm.obs.count == lengths.sum() == norm.ret.count
    valid = np.arange(T)[:, None] < lengths[None, :]
    np.testing.assert_allclose(norm.obs.mean, batch["obs"][:T][valid].mean(0), rtol=1e-6)
    # each stream's return runs over its own steps: the column cut after 1 step holds r_0
    assert norm.returns[3] == pytest.approx(0.0 if batch["dones"][0, 3] else raw[0, 3])


@pytest.mark.parametrize("args,message", [
    (["--algo", "a3c", "--sync", "average"], "--sync is an option of .* not of --algo a3c"),
    (["--algo", "ppo", "--sync", "average", "--target-kl", "0.01"], "unset --target-kl"),
    (["--algo", "dqn", "--straggler-cutoff", "0.5"],
     r"--straggler-cutoff is not available for --algo dqn: it cuts on-policy rollouts \(a2c, ppo"),
    (["--algo", "ppo", "--straggler-cutoff", "0.5", "--intrinsic", "rnd"],
     "does not combine with --intrinsic"),
    (["--algo", "ppo", "--average-every", "0"], "--average-every"),
])
def test_what_the_options_cannot_do_is_refused(args, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(args).validate()


def _rows(run):
    with open(run / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_averaging_every_k_updates_sends_k_times_fewer_bytes(tmp_path):
    sent = {}
    for mode in ("gradients", "average"):
        run = tmp_path / mode
        res = run_job(["mpirl.train", "--algo", "a2c", "--learners", "2", "--sync", mode,
                       "--average-every", "4", "--total-steps", "16000", "--eval-every", "0",
                       "--quiet", "--no-tensorboard", "--run-dir", str(run)], ranks=4)
        assert res.returncode == 0, res.stderr
        sent[mode] = json.loads((run / "summary.json").read_text())["allreduce_bytes_per_step"]
        assert float(_rows(run)[-1]["allreduce_bytes_per_step"]) > 0
    # the gradient buffer carries a few control slots more than the weights do
    assert 3.5 < sent["gradients"] / sent["average"] <= 4.05, sent


@pytest.mark.slow
def test_ppo_with_averaging_every_8_updates_solves_cartpole_on_4_learners(tmp_path):
    res = run_job(["mpirl.train", "--algo", "ppo", "--learners", "4", "--sync", "average",
                   "--average-every", "8", "--seed", "0", "--quiet", "--no-tensorboard",
                   "--run-dir", str(tmp_path)], ranks=4, timeout=300)
    assert res.returncode == 0, res.stderr
    evals = [float(r["eval_return_mean"]) for r in _rows(tmp_path) if r["eval_return_mean"]]
    assert max(evals) >= 475, evals


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_slow_actor_is_cut_and_the_run_still_covers_its_budget(tmp_path, monkeypatch, algo):
    monkeypatch.setenv("MPIRL_FAULT", "slow@3:20")
    res = run_job(["mpirl.train", "--algo", algo, "--straggler-cutoff", "0.6",
                   "--n-steps", "32", "--envs-per-actor", "8",  # PPO's defaults
                   "--total-steps", "12000", "--log-every", "1000", "--eval-every", "0",
                   "--quiet", "--no-tensorboard", "--run-dir", str(tmp_path)], ranks=4)
    assert res.returncode == 0, res.stderr
    rows = _rows(tmp_path)
    cut = [float(r["cut_rollouts"]) for r in rows if r["cut_rollouts"]]
    assert cut and min(cut) > 0, cut  # the slow actor (1 of 3) is cut every time
    summary = json.loads((tmp_path / "summary.json").read_text())
    # 2 whole rollouts of 8 envs x 32 steps a time, and the slow one's part of its own
    assert 12000 <= summary["env_steps"] < summary["iterations"] * 3 * 256, summary
    assert summary["env_steps"] >= summary["iterations"] * (2 * 256 + 64), summary
    assert int(rows[-1]["env_steps"]) == summary["env_steps"]


def test_a_stopped_and_resumed_averaging_run_ends_like_an_uninterrupted_one(tmp_path):
    # 40 minibatch updates an iteration, averaging every 12: only every third iteration ends
    # on an averaging step, where the stop and the checkpoints wait to be taken; each learner's
    # own optimizer moments go into the checkpoint
    args = ["--algo", "ppo", "--learners", "2", "--sync", "average", "--average-every", "12",
            "--total-steps", "30720", "--checkpoint-every", "4", "--log-every", "1024",
            "--eval-every", "5120", "--eval-episodes", "2", "--seed", "3", "--quiet",
            "--no-tensorboard"]
    whole, parts = whole_and_resumed(tmp_path, args, 30720, ranks=4)
    assert learning_rows(parts) == learning_rows(whole)
    assert same_weights(parts, whole)
