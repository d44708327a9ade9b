"""V-trace against a plain per-step reference, and the IMPALA loss against hand-computed
numbers."""
import numpy as np
import pytest
import torch

from mpirl.algos.impala.loss import impala_loss
from mpirl.algos.returns import gae, vtrace


def reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, c_bar,
                     pg_rho_bar):
    """The definition of section 4.1, one sum per step: v_s = V(x_s) + sum_{t>=s}
    (prod_{i<t} discount_i c_i) delta_t, in float64 loops."""
    T, N = rewards.shape
    rhos = np.exp(log_rhos.astype(np.float64))
    vs = np.zeros((T, N))
    adv = np.zeros((T, N))
    for n in range(N):
        v = np.append(values[:, n], bootstrap[n]).astype(np.float64)
        for s in range(T):
            total, weight = 0.0, 1.0
            for t in range(s, T):
                delta = min(rho_bar, rhos[t, n]) * (rewards[t, n] + discounts[t, n] * v[t + 1]
                                                    - v[t])
                total += weight * delta
                weight *= discounts[t, n] * min(c_bar, rhos[t, n])
            vs[s, n] = v[s] + total
        for s in range(T):
            next_v = vs[s + 1, n] if s + 1 < T else bootstrap[n]
            adv[s, n] = min(pg_rho_bar, rhos[s, n]) * (rewards[s, n] + discounts[s, n] * next_v
                                                       - v[s])
    return vs, adv


@pytest.mark.parametrize("bars", [(1.0, 1.0, 1.0), (0.8, 0.5, 2.0), (5.0, 5.0, 5.0)])
def test_vtrace_matches_the_per_step_definition(bars):
    rng = np.random.default_rng(7)
    T, N = 9, 5
    log_rhos = rng.normal(0, 1.0, (T, N)).astype(np.float32)
    dones = rng.random((T, N)) < 0.2
    discounts = (0.95 * (1 - dones)).astype(np.float32)
    rewards = rng.normal(0, 1, (T, N)).astype(np.float32)
    values = rng.normal(0, 2, (T, N)).astype(np.float32)
    bootstrap = rng.normal(0, 2, N).astype(np.float32)
    vs, adv = vtrace(*map(torch.from_numpy, (log_rhos, discounts, rewards, values, bootstrap)),
                     *bars)
    ref_vs, ref_adv = reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, *bars)
    np.testing.assert_allclose(vs.numpy(), ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-5, atol=1e-5)


def test_vtrace_on_policy_gives_nstep_returns():
    # behaviour == target: the targets are gae's lambda = 1 returns, episode ends and a
    # truncated episode's bootstrap (folded into its last reward) included
    rng = np.random.default_rng(3)
    T, N, gamma = 12, 4, 0.9
    rewards = rng.normal(0, 1, (T, N)).astype(np.float32)
    dones = (rng.random((T, N)) < 0.25).astype(np.float32)
    bootstrap_at_cut = np.where(rng.random((T, N)) < 0.5, rng.normal(0, 3, (T, N)), 0)
    rewards_in = (rewards + dones * bootstrap_at_cut).astype(np.float32)
    values = rng.normal(0, 2, (T, N)).astype(np.float32)
    last = rng.normal(0, 2, N).astype(np.float32)
    _, returns = gae(rewards_in, values, last, dones, gamma, 1.0)
    vs, adv = vtrace(torch.zeros(T, N), torch.from_numpy(gamma * (1 - dones)),
                     torch.from_numpy(rewards_in), torch.from_numpy(values),
                     torch.from_numpy(last))
    np.testing.assert_allclose(vs.numpy(), returns, rtol=1e-5, atol=1e-5)
    # the policy-gradient advantage is the one-step TD error towards the next target
    next_vs = np.concatenate([vs.numpy()[1:], last[None]], axis=0)
    np.testing.assert_allclose(adv.numpy(), rewards_in + gamma * (1 - dones) * next_vs - values,
                               rtol=1e-5, atol=1e-5)


def test_vtrace_targets_carry_no_gradient():
    values = torch.ones(3, 2, requires_grad=True)
    vs, adv = vtrace(torch.zeros(3, 2), torch.full((3, 2), 0.9), torch.ones(3, 2), values * 2,
                     torch.zeros(2))
    assert not vs.requires_grad and not adv.requires_grad


def test_impala_loss_numbers():
    logp = torch.tensor([-0.5, -1.0], requires_grad=True)
    entropy = torch.tensor([0.6, 0.4])
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    vs = torch.tensor([1.5, 1.0])
    adv = torch.tensor([2.0, -1.0])
    loss = impala_loss(logp, entropy, values, vs, adv, vf_coef=0.5, ent_coef=0.1)
    policy = -(2.0 * -0.5 + -1.0 * -1.0) / 2          # 0.0
    value = (0.25 + 1.0) / 2                          # 0.625
    assert float(loss.policy.detach()) == pytest.approx(policy)
    assert float(loss.value.detach()) == pytest.approx(value)
    assert float(loss.total.detach()) == pytest.approx(policy + 0.5 * value - 0.1 * 0.5)
    loss.total.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [-1.0, 0.5])   # -adv / N
