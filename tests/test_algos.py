"""Returns and losses against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from mpirl.acting.envs import EnvSpec
from mpirl.algos.a2c.loss import a2c_loss
from mpirl.algos.returns import gae
from mpirl.nets.actor_critic import ActorCritic


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


def test_double_dqn_targets_pick_online_argmax_and_evaluate_with_target():
    from mpirl.algos.dqn.loss import double_dqn_targets
    online = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    target = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    y = double_dqn_targets(online, target, torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]))
    # row 0: online prefers action 1, target says 20 -> 1 + 0.5 * 20; row 1: terminated -> 2
    assert y.tolist() == [11.0, 2.0]
    # --no-double-q: the target network's own maximum, 1 + 0.5 * 20 and 2
    y = double_dqn_targets(None, target, torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]))
    assert y.tolist() == [11.0, 2.0]
    online = torch.tensor([[3.0, 1.0], [5.0, 2.0]])  # online prefers action 0: 1 + 0.5 * 10
    assert double_dqn_targets(online, target, torch.tensor([1.0, 2.0]),
                              torch.tensor([0.5, 0.0])).tolist() == [6.0, 2.0]


def test_dqn_huber_loss_and_importance_weights():
    from mpirl.algos.dqn.loss import dqn_loss
    q = torch.tensor([[0.0, 1.0], [2.0, 0.0]], requires_grad=True)
    actions = torch.tensor([1, 0])
    targets = torch.tensor([1.5, 5.0])  # errors 0.5 (quadratic part) and 3.0 (linear part)
    loss, td = dqn_loss(q, actions, targets)
    assert loss.item() == pytest.approx((0.5 * 0.5 ** 2 + (3.0 - 0.5)) / 2)
    assert td.tolist() == [0.5, 3.0]
    weighted, _ = dqn_loss(q, actions, targets, torch.tensor([1.0, 0.0]))
    assert weighted.item() == pytest.approx(0.5 * 0.5 ** 2 / 2)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("weighted,double", [(False, True), (True, True), (False, False)])
def test_dqn_written_out_update_equals_autograd(activation, dueling, weighted, double):
    """DQN's update with the Q-network's backward pass written out (``DirectQ``) gives
    autograd's gradient, loss and TD errors: huge TD errors (the Huber loss's linear part)
    and small ones, importance weights, a learner's share of the global batch, double DQN's
    targets or the target network's maximum."""
    from types import SimpleNamespace

    from mpirl.algos.dqn.loss import DQN
    from mpirl.algos.dqn.qnetwork import QNetwork
    from mpirl.comm.gradsync import GradientAverager
    from mpirl.replay import Sample
    spec = EnvSpec((3, 2), np.dtype(np.float32), True, 5, None, None)
    torch.manual_seed(1)
    model = QNetwork(spec, [32, 16], activation, dueling)
    target = QNetwork(spec, [32, 16], activation, dueling)
    averager = GradientAverager(model.parameters(), None, share=0.3)
    dqn = DQN(SimpleNamespace(max_grad_norm=0.0, double_q=double), model, target, averager,
              SimpleNamespace(step=lambda: None))  # gradients only: no step
    assert dqn.direct is not None
    rng = np.random.default_rng(0)
    n = 40
    batch = Sample(np.arange(n), rng.standard_normal((n, 3, 2), dtype=np.float32) * 3,
                   rng.integers(0, 5, n), rng.standard_normal(n, dtype=np.float32) * 3,
                   rng.standard_normal((n, 3, 2), dtype=np.float32),
                   (rng.random(n) < 0.8).astype(np.float32) * 0.99,
                   rng.random(n, dtype=np.float32))
    written = dqn.update(batch, weighted)
    gradient = averager.flat.clone()
    dqn.direct = None
    reference = dqn.update(batch, weighted)
    assert np.abs(reference["td"]).max() > 2 and np.abs(reference["td"]).min() < 1
    torch.testing.assert_close(gradient, averager.flat, rtol=1e-5, atol=1e-7)
    assert gradient.abs().max() > 1e-2
    for key in ("loss", "q_mean", "q_max", "td_abs", "grad_norm"):
        assert written[key] == pytest.approx(reference[key], rel=1e-6)
    np.testing.assert_allclose(written["td"], reference["td"], rtol=1e-6)


@pytest.mark.parametrize("double", [False, True])
def test_cached_target_values_are_the_target_networks_and_give_the_same_update(double):
    """The target network's action values of every stored observation are cached between
    target copies: the cache holds what the target network gives on a minibatch's next
    observations, follows new rows and target copies, turns itself off once valuing the shard
    would cost more than valuing the minibatches, and the update it feeds (double DQN or the
    target's maximum) is the uncached one."""
    from types import SimpleNamespace

    from mpirl.algos.dqn.loss import DQN
    from mpirl.algos.dqn.qnetwork import QNetwork
    from mpirl.algos.dqn.target_values import TargetValues
    from mpirl.comm.gradsync import GradientAverager
    from mpirl.replay import VALID, ReplayShard
    spec = EnvSpec((3,), np.dtype(np.float32), True, 4, None, None)
    torch.manual_seed(2)
    model, target = QNetwork(spec, [32, 32]), QNetwork(spec, [32, 32])
    averager = GradientAverager(model.parameters(), None)
    dqn = DQN(SimpleNamespace(max_grad_norm=0.0, double_q=double), model, target, averager,
              SimpleNamespace(step=lambda: None))  # (copies the model to the target)
    shard = ReplayShard(50, 2, (3,), np.float32, (), np.int64, 1, 0.9)
    values = TargetValues(shard, target, 4, samples_per_copy=80)
    values.chunk = 7  # a refresh in several forward passes, the last one short
    values.refresh()
    rng = np.random.default_rng(0)

    def add(T):
        flags = np.where(rng.random((T, 2)) < 0.9, VALID, VALID | 6).astype(np.uint8)
        shard.add(rng.standard_normal((T, 2, 3), dtype=np.float32), rng.integers(0, 4, (T, 2)),
                  rng.standard_normal((T, 2), dtype=np.float32), flags)
        values.added(T)

    def check(sample):
        with torch.no_grad():
            expected = target(torch.from_numpy(sample.next_obs)).numpy()
        np.testing.assert_allclose(values.lookup(sample.next_cells), expected, rtol=1e-5,
                                   atol=1e-6)

    for _ in range(5):
        add(4)
    check(shard.sample(64, rng))
    with torch.no_grad():  # a target copy
        for p in target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    values.refresh()
    add(4)
    check(shard.sample(64, rng))
    saved = values.state_dict()
    again = TargetValues(shard, target, 4, samples_per_copy=80)
    again.load_state_dict(saved)
    assert again.active and np.array_equal(again.values[:48], values.values[:48])

    # the same update with the cached values as with the target network's forward pass
    sample = shard.sample(64, rng)
    cached = dqn.update(sample, False, next_target_q=values.lookup(sample.next_cells))
    gradient = averager.flat.clone()
    plain = dqn.update(sample, False)
    torch.testing.assert_close(gradient, averager.flat, rtol=1e-5, atol=1e-7)
    assert cached["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    assert gradient.abs().max() > 1e-3

    # 2 x 48 stored observations > 80 samples between copies: back to the minibatches
    for _ in range(12):
        add(4)
    assert not values.active and values.lookup(sample.next_cells) is None
    values.refresh()
    assert not values.active


def test_actor_epsilons_follow_ape_x_and_anneal():
    from mpirl.algos.dqn.exploration import actor_epsilon
    from mpirl.config.schema import Config
    cfg = Config(algo="dqn", exploration="apex", eps_base=0.4, eps_alpha=7.0,
                 exploration_fraction=0.1)
    assert actor_epsilon(cfg, 0.0, 0, 8) == 1.0
    assert actor_epsilon(cfg, 0.05, 0, 8) == pytest.approx(0.7)
    assert actor_epsilon(cfg, 0.5, 0, 8) == pytest.approx(0.4)
    assert actor_epsilon(cfg, 0.5, 7, 8) == pytest.approx(0.4 ** 8)
    assert actor_epsilon(cfg, 0.5, 3, 8) == pytest.approx(0.4 ** (1 + 7 * 3 / 7))
    # one acting rank: the linear schedule, not eps_base for the whole run
    assert actor_epsilon(cfg, 0.5, 0, 1) == pytest.approx(cfg.eps_final)
    cfg.exploration = "linear"
    assert actor_epsilon(cfg, 1.0, 5, 8) == pytest.approx(cfg.eps_final)


def test_dueling_q_network_centres_advantages():
    from mpirl.algos.dqn.qnetwork import QNetwork
    torch.manual_seed(0)
    net = QNetwork(EnvSpec((3,), np.dtype(np.float32), True, 4, None, None), [8], dueling=True)
    obs = torch.randn(5, 3)
    q = net(obs)
    x = torch.relu(torch.nn.functional.linear(obs, net.body[0].weight, net.body[0].bias))
    v = net.value_head(x)
    assert torch.allclose(q.mean(-1, keepdim=True), v, atol=1e-6)
    assert list(net.act(obs.numpy())) == q.argmax(-1).tolist()


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_the_flat_optimizer_steps_with_either_choice(optimizer):
    """PPO and IMPALA step one flat parameter; torch's RMSprop has no fused kernel, and
    --optimizer rmsprop once failed there."""
    from types import SimpleNamespace

    from mpirl.algos.optim import flat_optimizer
    from mpirl.comm import FlatParameters, GradientAverager
    model = torch.nn.Linear(3, 2)
    params = FlatParameters(model)
    averager = GradientAverager(model.parameters(), None)
    opt = flat_optimizer(SimpleNamespace(optimizer=optimizer, lr=0.1), params, averager)
    before = params.vector.detach().clone()
    averager.zero_grad()
    averager.backward(model(torch.ones(4, 3)).sum())
    opt.step()
    assert not torch.equal(params.vector.detach(), before)


@pytest.mark.parametrize("eps", [1e-5, 1e-8])
def test_the_flat_adam_steps_exactly_as_torchs_fused_adam(eps):
    """The learners' Adam (no torch.optim: its first use imports torch._dynamo, seconds of
    start-up) gives the numbers of ``torch.optim.Adam(fused=True)``, which DQN, SAC, TD3 and
    D4PG used before."""
    from mpirl.algos.optim import FlatAdam
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(300))
    ref = torch.nn.Parameter(ours.detach().clone())
    flat = FlatAdam(ours, lr=3e-3, eps=eps)
    torch_opt = torch.optim.Adam([ref], lr=3e-3, eps=eps, fused=True)
    for i in range(6):
        g = torch.randn(300)
        ours.grad, ref.grad = g.clone(), g.clone()
        if i == 3:
            flat.param_groups[0]["lr"] = torch_opt.param_groups[0]["lr"] = 1e-3
        flat.step()
        torch_opt.step()
    assert torch.equal(ours.detach(), ref.detach())


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_a_flat_optimizer_continues_from_a_torch_optimizers_state(kind):
    """Checkpoints written when A2C, DQN and the continuous learners used torch's optimizers
    hold torch's state layout (one entry per parameter): the flat optimizers continue from it
    as torch's own optimizer would."""
    from mpirl.algos.optim import FlatAdam, FlatRMSprop
    torch.manual_seed(1)
    shapes = [(4, 3), (4,), (2, 4)]
    ref = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    make = {"adam": lambda p: torch.optim.Adam(p, lr=1e-2, eps=1e-5),
            "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, alpha=0.99, eps=1e-5)}[kind]
    torch_opt = make(ref)
    grads = [[torch.randn(s) for s in shapes] for _ in range(4)]
    for step in grads[:3]:
        for p, g in zip(ref, step):
            p.grad = g.clone()
        torch_opt.step()
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in ref]))
    ours = (FlatAdam(flat, lr=0.5) if kind == "adam" else FlatRMSprop(flat, lr=0.5))
    ours.load_state_dict(torch_opt.state_dict())
    assert ours.param_groups[0]["lr"] == 1e-2
    for p, g in zip(ref, grads[3]):
        p.grad = g.clone()
    torch_opt.step()
    flat.grad = torch.cat([g.reshape(-1) for g in grads[3]])
    ours.step()
    torch.testing.assert_close(flat.detach(), torch.cat([p.detach().reshape(-1) for p in ref]),
                               rtol=1e-5, atol=1e-6)


def test_the_flat_rmsprop_steps_as_torchs_rmsprop():
    from mpirl.algos.optim import FlatRMSprop
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(20))
    ref = torch.nn.Parameter(ours.detach().clone())
    flat = FlatRMSprop(ours, lr=0.01)
    torch_opt = torch.optim.RMSprop([ref], lr=0.01, alpha=0.99, eps=1e-5)
    for _ in range(5):
        g = torch.randn(20)
        ours.grad, ref.grad = g.clone(), g.clone()
        flat.step()
        torch_opt.step()
    torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-6, atol=1e-7)
