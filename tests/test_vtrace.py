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


def test_vtrace_gives_the_same_numbers_on_numpy_arrays_and_torch_tensors():
    rng = np.random.default_rng(5)
    T, N = 6, 3
    args = [rng.normal(0, 1, (T, N)), 0.97 * (rng.random((T, N)) > 0.2), rng.normal(0, 1, (T, N)),
            rng.normal(0, 1, (T, N)), rng.normal(0, 1, N)]
    args = [a.astype(np.float32) for a in args]
    vs_np, adv_np = vtrace(*args, 0.9, 0.8, 1.1, 0.95)
    vs_t, adv_t = vtrace(*map(torch.from_numpy, args), 0.9, 0.8, 1.1, 0.95)
    assert isinstance(vs_np, np.ndarray)
    np.testing.assert_allclose(vs_np, vs_t.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(adv_np, adv_t.numpy(), rtol=1e-6, atol=1e-6)


def _impala_update(spec, by_hand: bool, obs_norm: bool, seed: int = 0):
    """One IMPALA update on a random batch; returns its gradient, the weights after it and
    its stats."""
    from types import SimpleNamespace

    from mpirl.algos.impala.loss import Impala
    from mpirl.algos.optim import flat_optimizer
    from mpirl.comm import FlatParameters, GradientAverager
    from mpirl.nets.actor_critic import ActorCritic

    torch.manual_seed(seed)
    model = ActorCritic(spec, [16, 8], "tanh", obs_norm=obs_norm)
    if obs_norm:
        model.set_obs_stats(np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 3.0]))
    params = FlatParameters(model)
    averager = GradientAverager(model.parameters(), None, share=0.7)
    cfg = SimpleNamespace(gamma=0.95, rho_bar=1.0, c_bar=0.9, pg_rho_bar=1.2, gae_lambda=0.97,
                          vf_coef=0.5, ent_coef=0.02, max_grad_norm=0.0, optimizer="adam",
                          lr=1e-2)
    algo = Impala(cfg, model, averager, flat_optimizer(cfg, params, averager),
                  autograd=not by_hand)
    assert (algo.by_hand is not None) == by_hand
    rng = np.random.default_rng(seed)
    T, N = 5, 4
    if spec.discrete:
        actions = rng.integers(0, 2, (T, N))
    else:
        actions = rng.normal(0, 1, (T, N, 2)).astype(np.float32)
    batch = {"obs": (2 * rng.normal(size=(T + 1, N, 3))).astype(np.float32),
             "actions": actions,
             "rewards": rng.normal(size=(T, N)).astype(np.float32),
             "dones": (rng.random((T, N)) < 0.2).astype(np.float32),
             "bootstrap": np.zeros((T, N), np.float32),
             "logp": rng.normal(-1.0, 0.5, (T, N)).astype(np.float32)}
    stats = algo.update(batch)
    return averager.flat.clone(), params.vector.detach().clone(), stats


@pytest.mark.parametrize("discrete,obs_norm", [(True, False), (False, True), (False, False)])
def test_the_hand_written_impala_gradient_equals_autograds(discrete, obs_norm):
    from mpirl.acting.envs import EnvSpec
    spec = (EnvSpec((3,), np.dtype(np.float32), True, 2, None, None) if discrete else
            EnvSpec((3,), np.dtype(np.float32), False, 2, np.array([-2.0, 0.0], np.float32),
                    np.array([2.0, 1.0], np.float32)))
    grad, weights, stats = _impala_update(spec, True, obs_norm)
    ref_grad, ref_weights, ref_stats = _impala_update(spec, False, obs_norm)
    for key in ("loss", "policy_loss", "value_loss", "entropy", "rho_mean", "grad_norm"):
        assert stats[key] == pytest.approx(ref_stats[key], rel=1e-4, abs=1e-5), key
    assert float(grad.abs().max()) > 1e-3
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-4, atol=1e-5)
