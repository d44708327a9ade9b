"""Recurrent policies: what an actor does with its LSTM state, a learner replays exactly; the
velocity-hidden CartPole shipped for them; the combinations refused at start-up."""
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from mpirl.acting.collect import RolloutCollector
from mpirl.acting.envs import EnvSpec, EnvVector
from mpirl.acting.evaluation import evaluate_policy
from mpirl.acting.messages import PackedArrays, report_fields, rollout_fields
from mpirl.acting.partial import NO_VELOCITY_ID
from mpirl.algos import actor_critic
from mpirl.algos.onpolicy import rollout_outputs
from mpirl.algos.ppo.update import PPO
from mpirl.comm import GradientAverager
from mpirl.config.fields import ConfigError
from mpirl.config.sources import parse_config
from mpirl.nets.recurrent import RecurrentActorCritic


def _collector(env_id: str, model, n_envs: int, n_steps: int, seed: int = 0):
    envs = EnvVector(env_id, n_envs, seed, rank=0)
    cfg = SimpleNamespace(recurrent="lstm", n_steps=n_steps, envs_per_actor=n_envs,
                          lstm_size=model.lstm_size, separate_critic=model.separate)
    fields = {**rollout_fields(envs.spec, n_steps, n_envs, logp=True),
              **actor_critic.recurrent_fields(cfg, envs.spec), **report_fields()}
    rollouts = RolloutCollector(model, envs, n_steps, 0.99, np.random.default_rng(seed))
    return rollouts, PackedArrays(fields)


def _replayed_logp(model, message: PackedArrays, resets: bool = True) -> np.ndarray:
    batch = {k: message[k].copy() for k in message.views}
    if not resets:
        batch["resets"][:] = 0.0
    T, N = batch["rewards"].shape
    with torch.no_grad():
        out, _ = rollout_outputs(model, torch.from_numpy(batch["obs"]), batch)
        actions = torch.from_numpy(batch["actions"]).reshape((T * N,) + batch["actions"].shape[2:])
        logp, _ = model.log_prob_entropy(out[:T * N], actions)
    return logp.numpy().reshape(T, N)


@pytest.mark.parametrize("env_id", [NO_VELOCITY_ID, "Pendulum-v1"])
def test_the_learner_replays_the_actors_lstm_over_each_rollout(env_id):
    """Over rollouts in which episodes end (and the actor zeroes those envs' states), the
    learner's outputs from the rollout's stored start state give the actor's log-probabilities;
    the state carries over into the next rollout. Without the resets they would not match."""
    spec = EnvVector(env_id, 1, 0, 0).spec
    torch.manual_seed(0)
    model = RecurrentActorCritic(spec, [32, 32], "tanh", lstm_size=16, obs_norm=True)
    with torch.no_grad():  # statistics that are not the identity, a policy far from uniform
        model.set_obs_stats(np.full(spec.obs_shape, 0.1), np.full(spec.obs_shape, 2.0))
        model.pi[0].weight *= 100.0
    rollouts, message = _collector(env_id, model, n_envs=4, n_steps=48)
    ended = 0
    for round_ in range(3):
        rollouts.collect(message)
        if round_ > 0:
            assert np.abs(message["state"]).max() > 0  # carried from the rollout before
        ended += int(message["resets"].sum())
        np.testing.assert_allclose(_replayed_logp(model, message), message["logp"],
                                   rtol=1e-4, atol=1e-4)
        with torch.no_grad():  # an update changes every weight in place
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))
    if env_id == NO_VELOCITY_ID:  # random CartPole episodes last ~20 steps
        assert ended > 0
        assert not np.allclose(_replayed_logp(model, message, resets=False), message["logp"],
                               atol=1e-3)


@pytest.mark.parametrize("cnn,separate", [(True, True), (False, True), (False, False)])
def test_policy_and_critic_cores_replay_what_the_actor_computed(cnn, separate):
    """Step by step as an actor (values as the collector bootstraps them: from the state
    before the step), then one unroll as a learner: the same log-probabilities and values, for
    the CNN's shared core and for the MLP's separate or shared actor and critic cores."""
    if cnn:
        spec = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 6, None, None)
    else:
        spec = EnvSpec((3,), np.dtype(np.float32), True, 4, None, None)
    torch.manual_seed(0)
    model = RecurrentActorCritic(spec, [64], "relu", lstm_size=32, cnn=cnn,
                                 separate_critic=separate)
    assert model.initial_state(3).shape == ((4 if separate and not cnn else 2), 3, 32)
    rng = np.random.default_rng(0)
    T, N = 6, 3
    if cnn:
        frames = rng.integers(0, 255, (T + 1, N, 4, 84, 84), dtype=np.uint8)
    else:
        frames = rng.standard_normal((T + 1, N, 3)).astype(np.float32)
    state = model.initial_state(N)
    start = state.copy()
    resets = np.zeros((T, N), np.float32)
    resets[2, 1] = 1.0
    actions, logps, values = [], [], []
    for t in range(T):
        values.append(model.predict_values(frames[t], state=state))
        a, logp = model.act_logp(frames[t], rng, state=state)
        actions.append(a)
        logps.append(logp)
        state[:, resets[t] > 0] = 0.0
    batch = {"state": start, "resets": resets}
    with torch.no_grad():
        out, replayed = rollout_outputs(model, torch.from_numpy(frames), batch)
        logp, _ = model.log_prob_entropy(out[:T * N], torch.from_numpy(np.stack(actions)
                                                                       ).reshape(-1))
    np.testing.assert_allclose(logp.numpy().reshape(T, N), np.stack(logps), atol=1e-4)
    assert replayed.shape == (T * N + N,)
    np.testing.assert_allclose(replayed.numpy()[:T * N].reshape(T, N), np.stack(values),
                               rtol=1e-4, atol=1e-4)


def test_recurrent_ppo_minibatches_are_whole_sequences_and_its_update_learns_nothing_wrong():
    """One epoch with one minibatch of all sequences: PPO's first step has ratio 1 (its outputs
    are the rollout's own), and an update changes the core's weights."""
    cfg = parse_config(["--algo", "ppo", "--recurrent", "lstm", "--n-epochs", "2",
                        "--lr", "0.01"])
    spec = EnvVector(NO_VELOCITY_ID, 1, 0, 0).spec
    torch.manual_seed(0)
    model = RecurrentActorCritic(spec, [16], "tanh", lstm_size=8)
    rollouts, message = _collector(NO_VELOCITY_ID, model, n_envs=6, n_steps=16)
    rollouts.collect(message)
    batch = {k: message[k].copy() for k in message.views}
    avg = GradientAverager(model.parameters(), None, extras=("approx_kl",))
    before = model.core.weight_hh_l0.detach().clone()
    algo = PPO(cfg, model, avg, torch.optim.Adam(model.parameters(), lr=cfg.lr), minibatches=3)
    assert algo.by_hand is None  # the hand-written gradient is the feed-forward MLP's
    stats = algo.update(batch, 0.2, np.random.default_rng(0))
    assert len(stats) == 6
    assert stats[0]["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert stats[0]["clip_fraction"] == 0.0
    assert not torch.equal(model.core.weight_hh_l0, before)


def test_a_recurrent_policy_refuses_to_act_without_its_state():
    spec = EnvVector(NO_VELOCITY_ID, 1, 0, 0).spec
    model = RecurrentActorCritic(spec, [8], "tanh", lstm_size=4)
    with pytest.raises(ValueError, match="initial_state"):
        model.act(np.zeros((2, 2), np.float32), np.random.default_rng(0))


def test_evaluation_plays_a_recurrent_policy_with_its_state():
    """Deterministic and repeatable: the same returns twice, and the episodes end."""
    spec = EnvVector(NO_VELOCITY_ID, 1, 0, 0).spec
    torch.manual_seed(1)
    model = RecurrentActorCritic(spec, [8], "tanh", lstm_size=4)
    first = evaluate_policy(model, NO_VELOCITY_ID, 3, seed=0)
    assert first == evaluate_policy(model, NO_VELOCITY_ID, 3, seed=0)
    assert all(1 <= r <= 500 for r in first)


def test_cartpole_without_velocities_is_cartpole_seen_in_part():
    full, hidden = gym.make("CartPole-v1"), gym.make(NO_VELOCITY_ID)
    assert hidden.observation_space.shape == (2,)
    assert hidden.spec.max_episode_steps == 500
    a, _ = full.reset(seed=3)
    b, _ = hidden.reset(seed=3)
    for step in range(30):
        np.testing.assert_array_equal(a[[0, 2]], b)
        a, ra, ta, _, _ = full.step(step % 2)
        b, rb, tb, _, _ = hidden.step(step % 2)
        assert (ra, ta) == (rb, tb)
        if ta:
            break


@pytest.mark.parametrize("args,needle", [
    (["--algo", "ppo", "--intrinsic", "rnd"], "--intrinsic rnd does not combine with "
                                              "--recurrent lstm"),
    (["--algo", "ppo", "--straggler-cutoff", "0.5"], "--straggler-cutoff does not combine"),
    (["--algo", "dqn"], "--recurrent is an option of"),
    (["--algo", "r2d2", "--no-separate-critic"],
     "--separate-critic is an option of a2c, ppo and impala, not of --algo r2d2"),
])
def test_what_a_recurrent_policy_does_not_combine_with_is_refused(args, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config([*args, "--recurrent", "lstm"])
