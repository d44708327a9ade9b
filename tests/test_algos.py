"""Returns and losses against hand-computed values."""
import math

import numpy as np
import torch

from mpirl.algos import a2c_loss, gae
from mpirl.envs import EnvSpec
from mpirl.models import ActorCritic


def test_nstep_returns_with_episode_end():
    # one env, 3 steps, episode ends after step 1: no bootstrap across it
    rewards = np.array([[1.0], [2.0], [3.0]], np.float32)
    values = np.array([[0.5], [0.25], [1.0]], np.float32)
    dones = np.array([[0.0], [1.0], [0.0]], np.float32)
    last = np.array([4.0], np.float32)
    adv, ret = gae(rewards, values, last, dones, gamma=0.5, lam=1.0)
    # step 2: 3 + 0.5*4 = 5; step 1: 2 (ended); step 0: 1 + 0.5*2 = 2
    np.testing.assert_allclose(ret[:, 0], [2.0, 2.0, 5.0])
    np.testing.assert_allclose(adv[:, 0], [1.5, 1.75, 4.0])


def test_gae_lambda():
    rewards = np.array([[1.0], [1.0]], np.float32)
    values = np.array([[1.0], [2.0]], np.float32)
    last = np.array([3.0], np.float32)
    adv, ret = gae(rewards, values, last, np.zeros((2, 1), np.float32), gamma=0.9, lam=0.5)
    d1 = 1 + 0.9 * 3 - 2          # 1.7
    d0 = 1 + 0.9 * 2 - 1          # 1.8
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.9 * 0.5 * d1, d1], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + values)


def test_a2c_loss_numbers():
    logp = torch.tensor([-0.5, -1.0])
    entropy = torch.tensor([0.6, 0.4])
    values = torch.tensor([1.0, 2.0])
    adv = torch.tensor([2.0, -1.0])
    ret = torch.tensor([3.0, 1.0])
    loss = a2c_loss(logp, entropy, values, adv, ret, vf_coef=0.5, ent_coef=0.1)
    policy = -(2.0 * -0.5 + -1.0 * -1.0) / 2  # 0.0
    value = ((3 - 1) ** 2 + (1 - 2) ** 2) / 2  # 2.5
    assert math.isclose(float(loss.policy), policy, abs_tol=1e-7)
    assert math.isclose(float(loss.value), value)
    assert math.isclose(float(loss.total), policy + 0.5 * value - 0.1 * 0.5, rel_tol=1e-6)


def test_heads_match_torch_distributions():
    torch.manual_seed(0)
    disc = ActorCritic(EnvSpec((3,), np.dtype(np.float32), True, 4, None, None), [8])
    obs = torch.randn(5, 3)
    out, _ = disc(obs)
    actions = torch.tensor([0, 1, 2, 3, 1])
    logp, ent = disc.log_prob_entropy(out, actions)
    ref = torch.distributions.Categorical(logits=out)
    torch.testing.assert_close(logp, ref.log_prob(actions))
    torch.testing.assert_close(ent, ref.entropy())

    cont = ActorCritic(EnvSpec((3,), np.dtype(np.float32), False, 2,
                               -np.ones(2, np.float32), np.ones(2, np.float32)), [8])
    with torch.no_grad():
        cont.log_std.fill_(-0.3)
    out, _ = cont(obs)
    actions = torch.randn(5, 2)
    logp, ent = cont.log_prob_entropy(out, actions)
    ref = torch.distributions.Normal(out, cont.log_std.exp())
    torch.testing.assert_close(logp, ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(ent, ref.entropy().sum(-1))


def test_sampled_actions_follow_the_policy():
    torch.manual_seed(0)
    model = ActorCritic(EnvSpec((2,), np.dtype(np.float32), True, 3, None, None), [4])
    with torch.no_grad():
        model.pi[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
        model.pi[-1].weight.zero_()
    obs = np.zeros((20000, 2), np.float32)
    counts = np.bincount(model.act(obs, np.random.default_rng(1)), minlength=3) / len(obs)
    np.testing.assert_allclose(counts, np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(), atol=0.01)
    assert (model.act(obs[:3], None, deterministic=True) == 2).all()
