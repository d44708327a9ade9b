"""The maths of SAC, TD3 and D4PG against plain reference computations, and their networks."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mpirl.acting.envs import describe_env, make_env
from mpirl.algos.d4pg.loss import categorical_projection, distributional_critic_loss
from mpirl.algos.sac.loss import soft_q_targets, squashed_sample, temperature_loss
from mpirl.algos.td3.loss import smoothed_target_actions
from mpirl.nets.continuous import ContinuousPolicy, Critics


def reference_projection(probs, returns, discounts, support):
    """Bellemare et al.'s Algorithm 1, atom by atom, in float64."""
    k = len(support)
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (k - 1)
    out = np.zeros_like(probs)
    for i in range(len(returns)):
        for j in range(k):
            tz = min(max(returns[i] + discounts[i] * support[j], v_min), v_max)
            b = (tz - v_min) / dz
            lo, hi = math.floor(b), math.ceil(b)
            if lo == hi:
                out[i, lo] += probs[i, j]
            else:
                out[i, lo] += probs[i, j] * (hi - b)
                out[i, hi] += probs[i, j] * (b - lo)
    return out


@pytest.mark.parametrize("atoms,v_min,v_max", [(51, -10.0, 10.0), (11, -150.0, 0.0),
                                               (2, 0.0, 1.0)])
def test_categorical_projection_equals_the_per_atom_loop(atoms, v_min, v_max):
    rng = np.random.default_rng(atoms)
    n = 64
    probs = rng.dirichlet(np.ones(atoms), size=n)
    span = v_max - v_min
    returns = rng.uniform(v_min - 0.3 * span, v_max + 0.3 * span, n)  # some fall off the support
    discounts = rng.choice([0.0, 0.99, 0.99 ** 5, 1.0], n)
    support = np.linspace(v_min, v_max, atoms)
    returns[:4] = support[[0, 1, -1, atoms // 2]]  # exactly on an atom, with discount 0
    discounts[:4] = 0.0
    got = categorical_projection(torch.tensor(probs), torch.tensor(returns),
                                 torch.tensor(discounts), torch.tensor(support)).numpy()
    want = reference_projection(probs, returns, discounts, support)
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-12)


def test_the_distributional_loss_is_the_cross_entropy_to_the_projected_target():
    logits = torch.randn(5, 7)
    target = F.softmax(torch.randn(5, 7), -1)
    loss, per_sample = distributional_critic_loss(logits, target)
    want = -(target * torch.log(F.softmax(logits, -1))).sum(-1)
    torch.testing.assert_close(per_sample, want)
    torch.testing.assert_close(loss, want.mean())


def test_the_squashed_log_probability_is_the_change_of_variables():
    """log p(a) of a = tanh(u), u ~ N(mean, std): log N(u) - log |det da/du|, the Jacobian
    taken by autograd in float64, also where tanh saturates."""
    torch.manual_seed(0)
    mean = torch.randn(6, 3, dtype=torch.float64) * 3
    log_std = torch.randn(6, 3, dtype=torch.float64).clamp(-2, 1)
    noise = torch.randn(6, 3, dtype=torch.float64)
    actions, logp = squashed_sample(mean, log_std, noise)
    u = mean + log_std.exp() * noise
    gaussian = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    for i in range(6):
        jac = torch.autograd.functional.jacobian(torch.tanh, u[i])
        want = gaussian[i] - torch.logdet(jac)
        torch.testing.assert_close(logp[i], want)
    torch.testing.assert_close(actions, torch.tanh(u))
    assert actions.abs().max() <= 1


def test_soft_targets_take_the_smaller_critic_and_stop_at_terminations():
    next_q = torch.tensor([[1.0, 5.0], [2.0, 3.0]])  # (critics, batch)
    next_logp = torch.tensor([0.5, -1.0])
    y = soft_q_targets(next_q, next_logp, 0.2, torch.tensor([1.0, 1.0]),
                       torch.tensor([0.9, 0.0]))
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * (1.0 - 0.1), 1.0]))


def test_the_temperature_rises_while_the_entropy_is_below_its_target():
    """A gradient step on log alpha raises it while the entropy (-mean log pi) is below the
    target, and lowers it above."""
    log_alpha = torch.zeros(1, requires_grad=True)
    temperature_loss(log_alpha, torch.tensor([2.0, 3.0]), target_entropy=-1.0).backward()
    assert log_alpha.grad.item() == pytest.approx(-1.5)  # entropy -2.5 < -1: alpha rises
    log_alpha.grad = None
    temperature_loss(log_alpha, torch.tensor([-2.0, -3.0]), target_entropy=-1.0).backward()
    assert log_alpha.grad.item() == pytest.approx(3.5)  # entropy 2.5 > -1: alpha falls


def test_target_smoothing_noise_is_clipped_and_actions_stay_in_bounds():
    actions = torch.tensor([[0.9], [0.0], [-0.95]])
    noise = torch.tensor([[10.0], [-10.0], [-1.0]])
    got = smoothed_target_actions(actions, noise, noise_std=0.2, noise_clip=0.5)
    torch.testing.assert_close(got, torch.tensor([[1.0], [-0.5], [-1.0]]))


def _pendulum():
    env = make_env("Pendulum-v1")
    spec = describe_env(env)
    env.close()
    return spec


def test_the_critic_ensemble_equals_separate_mlps():
    spec = _pendulum()
    torch.manual_seed(0)
    critics = Critics(spec, [16, 8], members=3, outputs=5)
    obs, actions = torch.randn(4, 3), torch.rand(4, 1) * 2 - 1
    out = critics(obs, actions)
    assert out.shape == (3, 4, 5)
    for m in range(3):
        x = torch.cat([obs, actions], -1)
        for i, (w, b) in enumerate(zip(critics.weights, critics.biases)):
            x = F.linear(x, w[m].T, b[m, 0])
            if i < 2:
                x = F.relu(x)
        torch.testing.assert_close(out[m], x)
    torch.testing.assert_close(critics(obs, actions, members=1)[0], out[0])


def test_a_frozen_critic_passes_gradient_to_the_actions_only():
    critics = Critics(_pendulum(), [8])
    actions = torch.zeros(2, 1, requires_grad=True)
    critics(torch.randn(2, 3), actions, frozen=True).sum().backward()
    assert actions.grad is not None and all(p.grad is None for p in critics.parameters())


@pytest.mark.parametrize("stochastic", [False, True])
def test_actors_act_in_numpy_as_the_learner_computes_and_scale_to_the_bounds(stochastic):
    spec = _pendulum()
    policy = ContinuousPolicy(spec, [32, 32], stochastic=stochastic)
    obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    out = policy(torch.from_numpy(obs))
    mode = torch.tanh(policy.split(out)[0] if stochastic else out).detach().numpy()
    np.testing.assert_allclose(policy.act(obs, deterministic=True), mode, rtol=1e-5,
                               atol=1e-6)
    sampled = policy.act(obs, np.random.default_rng(1))
    assert np.all(np.abs(sampled) <= 1) and (stochastic != np.allclose(sampled, mode))
    np.testing.assert_allclose(policy.to_env(np.array([[-1.0], [0.0], [1.0]])),
                               [[-2.0], [0.0], [2.0]])
