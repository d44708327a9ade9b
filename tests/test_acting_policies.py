"""Acting ranks act with numpy twins of the MLP policies (``mpirl.nets.acting``) and never
import torch: the twin the lead sends, given the learner's flat weight vector, acts as the torch
module with those weights does; the ranks of a job that act in numpy run without torch."""
import dataclasses
import pickle

import numpy as np
import pytest
import torch

from helpers import run_job

from mpirl.acting.envs import describe_env, make_env
from mpirl.comm import FlatParameters


def _spec(env_id: str):
    env = make_env(env_id)
    spec = describe_env(env, env_id)
    env.close()
    return spec


def _policies():
    from mpirl.algos.dqn.qnetwork import QNetwork
    from mpirl.algos.r2d2.network import RecurrentQNetwork
    from mpirl.nets.actor_critic import ActorCritic
    from mpirl.nets.continuous import ContinuousPolicy
    from mpirl.nets.recurrent import RecurrentActorCritic
    cartpole, pendulum = _spec("CartPole-v1"), _spec("Pendulum-v1")
    return {
        "actor-critic, discrete": lambda: ActorCritic(cartpole, [16, 8], "tanh"),
        "actor-critic, obs statistics, 2 value heads": lambda: ActorCritic(
            cartpole, [16], "relu", obs_norm=True, clip_obs=3.0, value_heads=2),
        "actor-critic, Gaussian, clipped": lambda: ActorCritic(pendulum, [16, 16], "tanh"),
        "actor-critic, Gaussian, squashed, obs statistics": lambda: ActorCritic(
            pendulum, [16], "tanh", obs_norm=True, squash=True, log_std_init=-0.5),
        "q-network": lambda: QNetwork(cartpole, [16, 16], "relu"),
        "q-network, dueling": lambda: QNetwork(cartpole, [16], "tanh", dueling=True),
        "continuous, stochastic": lambda: ContinuousPolicy(pendulum, [16, 16], "relu",
                                                           stochastic=True),
        "continuous, deterministic": lambda: ContinuousPolicy(pendulum, [16], "relu"),
        "recurrent actor-critic, separate critic core": lambda: RecurrentActorCritic(
            cartpole, [16], "tanh", lstm_size=8, obs_norm=True),
        "recurrent actor-critic, shared core, Gaussian": lambda: RecurrentActorCritic(
            pendulum, [16, 16], "tanh", lstm_size=8, separate_critic=False, squash=True),
        "recurrent q-network, dueling": lambda: RecurrentQNetwork(cartpole, [16], "relu",
                                                                  lstm_size=8, dueling=True),
    }


@pytest.mark.parametrize("name", list(_policies()))
def test_the_sent_twin_acts_as_the_module_with_the_learners_weights(name):
    torch.manual_seed(0)
    model = _policies()[name]()
    twin = pickle.loads(pickle.dumps(model.acting()))  # what the lead sends
    flat = FlatParameters(model)  # the learner's weights, as they travel
    assert twin.vector.size == flat.numel
    flat.load_(torch.randn(flat.numel) * 0.7)
    if getattr(model, "obs_norm", False):  # positive variances
        model.normalizer.var.data.abs_().add_(0.1)
    twin.vector[:] = flat.vector.numpy()  # received into the twin's memory
    obs_shape = model.spec.obs_shape
    obs = np.random.default_rng(1).normal(0, 2, (5, *obs_shape)).astype(np.float32)
    recurrent = getattr(model, "recurrent", False)
    assert twin.recurrent is recurrent if recurrent else not getattr(twin, "recurrent", False)

    def state() -> dict:  # from the zero state, which the torch forward pass starts from
        return {"state": model.initial_state(len(obs))} if recurrent else {}

    for deterministic in (False, True):
        ours = twin.act(obs, np.random.default_rng(2), deterministic=deterministic, **state())
        ref = model.act(obs, np.random.default_rng(2), deterministic=deterministic, **state())
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(twin.to_env(ours), model.to_env(ref))
    if hasattr(model, "act_logp"):
        ours, ours_logp = twin.act_logp(obs, np.random.default_rng(3), **state())
        ref, ref_logp = model.act_logp(obs, np.random.default_rng(3), **state())
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(ours_logp, ref_logp)
        with torch.no_grad():  # and both are the torch module's own numbers
            logp, _ = model.log_prob_entropy(model(torch.from_numpy(obs))[0],
                                             torch.as_tensor(ref))
        np.testing.assert_allclose(ours_logp, logp.numpy(), rtol=1e-4, atol=1e-4)
    if hasattr(model, "predict_values"):
        with torch.no_grad():
            values = model.value(torch.from_numpy(obs)).numpy()
        np.testing.assert_allclose(twin.predict_values(obs, **state()), values, rtol=1e-5,
                                   atol=1e-5)
    if hasattr(model, "dueling"):
        with torch.no_grad():
            greedy = model(torch.from_numpy(obs)).argmax(-1).numpy()
        np.testing.assert_array_equal(twin.act(obs, **state()), greedy)
    if recurrent:  # a second step goes on from the state the first left, in both
        ours_state, ref_state = state()["state"], state()["state"]
        for _ in range(2):
            ours = twin.act(obs, np.random.default_rng(4), state=ours_state)
            ref = model.act(obs, np.random.default_rng(4), state=ref_state)
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(ours_state, ref_state)
        assert np.abs(ours_state).sum() > 0


def test_cnn_policies_act_in_torch():
    from mpirl.algos.r2d2.network import RecurrentQNetwork
    from mpirl.nets.actor_critic import CNNActorCritic
    from mpirl.nets.recurrent import RecurrentActorCritic
    frames = dataclasses.replace(_spec("CartPole-v1"), obs_shape=(4, 84, 84),
                                 obs_dtype=np.dtype(np.uint8))
    assert CNNActorCritic(frames, [], "relu").acting() is None
    assert RecurrentActorCritic(frames, [], "relu", lstm_size=8, cnn=True).acting() is None
    assert RecurrentQNetwork(frames, [], "relu", lstm_size=8).acting() is None


@pytest.mark.parametrize("algo,env,extra", [
    ("ppo", "CartPole-v1", []),
    ("dqn", "CartPole-v1", ["--learning-starts", "100"]),
    ("sac", "Pendulum-v1", ["--learning-starts", "100", "--total-steps", "400"]),
    ("impala", "CartPole-v1", []),
    ("ppo", "CartPole-v1", ["--recurrent", "lstm"]),
    ("r2d2", "CartPole-v1", ["--learning-starts", "100"]),
])
def test_actors_of_mlp_policies_run_without_torch(tmp_path, monkeypatch, algo, env, extra):
    """One learner and two actors: only the learner imports torch. (A CNN policy has no
    numpy twin, ``test_cnn_policies_act_in_torch``: its actors build the torch module, as the
    Atari job tests run.)"""
    reports = tmp_path / "imports"
    reports.mkdir()
    monkeypatch.setenv("MPIRL_TEST_IMPORTS_DIR", str(reports))
    res = run_job(["mpirl.train", "--algo", algo, "--env", env, "--total-steps", "2000",
                   "--env-wrapper", "envs_for_tests:report_imports", "--eval-episodes", "2",
                   "--no-tensorboard", "--quiet", "--run-dir", str(tmp_path / "run"), *extra],
                  ranks=3)
    assert res.returncode == 0, res.stderr
    found = sorted(p.read_text() for p in reports.iterdir())
    assert found == ["numpy", "numpy", "torch"]
