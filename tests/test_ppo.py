"""PPO's loss against hand-computed values; running moments; Gaussian action bounds."""
import math

import numpy as np
import pytest
import torch

from mpirl.acting.envs import EnvSpec
from mpirl.algos.moments import Moments
from mpirl.algos.normalization import RolloutNormalization
from mpirl.algos.ppo.loss import ppo_loss
from mpirl.algos.ppo.update import PPO
from mpirl.comm import FlatParameters, GradientAverager
from mpirl.config.fields import ConfigError
from mpirl.config.sources import parse_config
from mpirl.nets.actor_critic import ActorCritic

SPEC = EnvSpec((3,), np.dtype(np.float32), True, 2, None, None)
BOX = EnvSpec((3,), np.dtype(np.float32), False, 2, np.array([-2.0, 0.0], np.float32),
              np.array([2.0, 1.0], np.float32))


def test_clipped_objective_value_clipping_and_kl_match_hand_computed_values():
    logp = torch.tensor([math.log(0.5), math.log(0.9), math.log(0.1)])
    old = torch.tensor([math.log(0.4), math.log(0.5), math.log(0.2)])
    adv = torch.tensor([1.0, 2.0, -1.0])
    values = torch.tensor([1.0, 3.0, 0.0])
    old_values = torch.tensor([0.5, 1.0, 0.0])
    returns = torch.tensor([2.0, 2.0, 1.0])
    entropy = torch.tensor([0.6, 0.5, 0.4])
    loss = ppo_loss(logp, old, adv, values, old_values, returns, entropy, clip=0.2,
                    clip_vf=0.5, vf_coef=0.5, ent_coef=0.01)
    ratio = np.array([0.5 / 0.4, 0.9 / 0.5, 0.1 / 0.2])  # 1.25, 1.8, 0.5
    a = np.array([1.0, 2.0, -1.0])
    surrogate = np.minimum(ratio * a, np.clip(ratio, 0.8, 1.2) * a)  # 1.2, 2.4, -0.8
    assert float(loss.policy) == pytest.approx(-surrogate.mean(), rel=1e-6)
    # value errors: plain (1, 1, 1); clipped predictions 1.0, 1.5, 0.0 -> (1, 0.25, 1)
    assert float(loss.value) == pytest.approx(1.0, rel=1e-6)
    log_r = np.log(ratio)
    assert float(loss.approx_kl) == pytest.approx(((ratio - 1) - log_r).mean(), rel=1e-5)
    assert float(loss.clip_fraction) == pytest.approx(1.0)  # every ratio left [0.8, 1.2]
    assert float(loss.total) == pytest.approx(-surrogate.mean() + 0.5 * 1.0 - 0.01 * 0.5,
                                              rel=1e-6)
    # the clipped error wins where it is larger: a prediction far past old_values
    far = ppo_loss(logp, old, adv, torch.tensor([3.0, 3.0, 3.0]), old_values, returns,
                   entropy, 0.2, 0.5, 0.5, 0.0)
    # clipped predictions 1.0, 1.5, 0.5: errors max((1, 1, 4), (1, 0.25, 0.25))
    assert float(far.value) == pytest.approx((1 + 1 + 4) / 3, rel=1e-6)


def test_moments_merged_in_any_split_equal_those_of_all_the_data():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (1000, 4)) * np.array([1, 10, 0.1, 1000])
    total = Moments((4,))
    for part in np.array_split(data, [7, 300, 301, 650]):
        total.merge(Moments.of(part, (4,)))
    assert total.count == 1000
    np.testing.assert_allclose(total.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(total.var, data.var(0), rtol=1e-10)
    back = Moments.unpack(total.pack(), (4,))
    assert back.count == total.count and np.array_equal(back.m2, total.m2)


def test_reward_scaling_divides_by_the_std_of_discounted_returns():
    cfg = parse_config(["--algo", "ppo", "--normalize-reward", "--gamma", "0.5"])
    model = ActorCritic(SPEC, [8])
    norm = RolloutNormalization(cfg, model, None, streams=1)
    rewards = np.array([[1.0], [1.0], [1.0]], dtype=np.float32)
    dones = np.array([[0.0], [1.0], [0.0]], dtype=np.float32)
    batch = {"obs": np.zeros((4, 1, 3), np.float32), "rewards": rewards.copy(), "dones": dones}
    norm.prepare(batch)
    returns = np.array([1.0, 1.5, 1.0])  # the episode ends after step 1
    np.testing.assert_allclose(batch["rewards"][:, 0], rewards[:, 0] / np.sqrt(returns.var()
                                                                              + 1e-8), rtol=1e-5)


def test_observation_statistics_reach_the_model_only_after_the_update():
    cfg = parse_config(["--algo", "ppo", "--normalize-obs"])
    model = ActorCritic(SPEC, [8], obs_norm=True)
    norm = RolloutNormalization(cfg, model, None, streams=2)
    obs = np.random.default_rng(1).normal(5.0, 3.0, (6, 2, 3)).astype(np.float32)
    batch = {"obs": obs, "rewards": np.zeros((5, 2), np.float32),
             "dones": np.zeros((5, 2), np.float32)}
    norm.prepare(batch)
    assert torch.equal(model.normalizer.mean, torch.zeros(3))  # the update sees what actors saw
    norm.publish()
    np.testing.assert_allclose(model.normalizer.mean.numpy(), obs[:5].reshape(-1, 3).mean(0),
                               rtol=1e-5)
    np.testing.assert_allclose(model.normalizer.var.numpy(), obs[:5].reshape(-1, 3).var(0),
                               rtol=1e-4)
    # trainable parameters come first: the statistics are the last entries of the flat vector
    params = FlatParameters(model)
    assert torch.equal(params.vector[-6:-3], model.normalizer.mean.reshape(-1))
    assert GradientAverager(model.parameters(), None).numel == params.numel - 6


def test_gaussian_actions_are_clipped_or_squashed_into_the_bounds():
    raw = np.array([[-10.0, 0.5], [0.0, 10.0], [1.0, -3.0]], dtype=np.float32)
    clipped = ActorCritic(BOX, [8]).to_env(raw)
    np.testing.assert_array_equal(clipped, [[-2.0, 0.5], [0.0, 1.0], [1.0, 0.0]])
    squashed = ActorCritic(BOX, [8], squash=True).to_env(raw)
    assert np.all(squashed >= BOX.action_low) and np.all(squashed <= BOX.action_high)
    np.testing.assert_allclose(squashed[1], [0.0, (np.tanh(10.0) + 1) / 2], rtol=1e-6)
    np.testing.assert_allclose(squashed[2, 0], 2.0 * np.tanh(1.0), rtol=1e-6)


def test_ppo_takes_n_epochs_x_minibatches_steps_and_the_target_kl_cuts_them_short():
    def run(*flags):
        cfg = parse_config(["--algo", "ppo", "--n-epochs", "4", "--lr", "0.01", *flags])
        torch.manual_seed(0)
        model = ActorCritic(SPEC, [16])
        avg = GradientAverager(model.parameters(), None, extras=("approx_kl",))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        algo = PPO(cfg, model, avg, opt, minibatches=3)
        rng = np.random.default_rng(0)
        T, N = 8, 6
        batch = {"obs": rng.standard_normal((T + 1, N, 3)).astype(np.float32),
                 "actions": rng.integers(0, 2, (T, N)),
                 "rewards": rng.standard_normal((T, N)).astype(np.float32),
                 "dones": np.zeros((T, N), np.float32),
                 "bootstrap": np.zeros((T, N), np.float32)}
        return algo, algo.update(batch, 0.2, rng)

    algo, stats = run()
    assert len(stats) == 12 and algo.kl_stops == 0
    assert stats[0]["approx_kl"] == pytest.approx(0.0, abs=1e-7)  # nothing has changed yet
    algo, stats = run("--target-kl", "1e-6")
    assert 1 <= len(stats) < 12 and algo.kl_stops == 1


@pytest.mark.parametrize("args,needle", [
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--target-kl", "-1"], "--target-kl must be positive"),
    (["--clip-range", "0"], "--clip-range must be positive"),
])
def test_bad_ppo_settings_are_rejected(args, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config(["--algo", "ppo", *args])


def test_normalization_is_refused_where_it_does_not_apply():
    with pytest.raises(ConfigError, match="--normalize-obs is an option of a2c, ppo and impala, "
                                          "not of --algo dqn"):
        parse_config(["--algo", "dqn", "--normalize-obs"])


@pytest.mark.parametrize("discrete,activation,obs_norm", [(True, "tanh", False),
                                                          (False, "relu", True),
                                                          (False, "tanh", False)])
@pytest.mark.parametrize("clip_vf", [None, 0.3])
def test_the_hand_written_ppo_gradient_equals_autograds(discrete, activation, obs_norm, clip_vf):
    from mpirl.algos.ppo.mlp_backprop import MLPLossGrad
    spec = SPEC if discrete else BOX
    torch.manual_seed(0)
    model = ActorCritic(spec, [16, 8], activation, obs_norm=obs_norm)
    if obs_norm:
        model.set_obs_stats(np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 3.0]))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p += 0.3 * torch.randn_like(p)
    averager = GradientAverager(model.parameters(), None)
    n = 50
    obs = 2 * torch.randn(n, 3)
    actions = torch.randint(0, 2, (n,)) if discrete else torch.randn(n, 2)
    with torch.no_grad():
        out, values = model(obs)
        old_logp = model.log_prob_entropy(out, actions)[0] + 0.4 * torch.randn(n)
    old_values = values + 0.5 * torch.randn(n)
    adv, ret = torch.randn(n), torch.randn(n)
    out, values = model(obs)
    logp, entropy = model.log_prob_entropy(out, actions)
    loss = ppo_loss(logp, old_logp, adv, values, old_values, ret, entropy, 0.2, clip_vf, 0.5, 0.01)
    averager.zero_grad()
    (loss.total * 0.7).backward()  # a learner's share of 0.7
    expected = averager.flat.clone()
    averager.zero_grad()
    by_hand = MLPLossGrad(model)(model._flat(obs), actions, old_logp, adv, old_values, ret, 0.2,
                                 clip_vf, 0.5, 0.01, share=0.7)
    assert float(by_hand.total) == pytest.approx(float(loss.total.detach()), abs=1e-6)
    # float32 rounding, not formulas: log-probabilities here reach -39, where one unit in the
    # last place moves the ratio by 4e-6; a wrong term would be off by orders more
    torch.testing.assert_close(averager.flat, expected, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_updates_at_the_default_sizes_are_autograds_with_or_without_the_hand_gradient(env):
    """Whole PPO updates (epochs of minibatches, clipping, the flat Adam step) with the default
    64x64 networks on a CPU: the hand-written gradient, whose 64x64 layer takes the wide-matrix
    branch, ends with the weights that --autograd gives."""
    from mpirl.acting.envs import describe_env, make_env
    from mpirl.algos.optim import FlatAdam, flat_parameter
    from mpirl.nets.backprop import _WIDE

    def update(*flags):
        cfg = parse_config(["--algo", "ppo", "--env", env, "--ent-coef", "0.01",
                            "--clip-range-vf", "0.5", *flags])
        spec = describe_env(make_env(env))
        torch.manual_seed(0)
        model = cfg.algorithm.policy(cfg, spec)
        params = FlatParameters(model)
        avg = GradientAverager(model.parameters(), None, extras=("approx_kl",))
        opt = FlatAdam(flat_parameter(params, avg), cfg.lr)
        algo = PPO(cfg, model, avg, opt, minibatches=4, autograd=cfg.autograd)
        rng = np.random.default_rng(1)
        T, N = 32, 8
        obs = rng.standard_normal((T + 1, N, *spec.obs_shape)).astype(np.float32)
        actions = (rng.integers(0, spec.n_actions, (T, N)) if spec.discrete
                   else rng.standard_normal((T, N, spec.n_actions)).astype(np.float32))
        batch = {"obs": obs, "actions": actions,
                 "rewards": rng.standard_normal((T, N)).astype(np.float32),
                 "dones": (rng.random((T, N)) < 0.05).astype(np.float32),
                 "bootstrap": np.zeros((T, N), np.float32)}
        stats = algo.update(batch, cfg.clip_range, np.random.default_rng(2))
        return algo, params.vector.clone(), stats

    by_hand, weights, stats = update()
    assert by_hand.by_hand is not None
    assert [layer.wide for layer in by_hand.by_hand.net.pi] == [False, True, False]
    assert _WIDE <= 64
    autograd, reference, ref_stats = update("--autograd")
    assert autograd.by_hand is None
    assert len(stats) == len(ref_stats) == 20 * 4
    torch.testing.assert_close(weights, reference, rtol=1e-4, atol=1e-5)
    assert stats[-1]["loss"] == pytest.approx(ref_stats[-1]["loss"], rel=1e-3, abs=1e-5)
    assert stats[-1]["approx_kl"] == pytest.approx(ref_stats[-1]["approx_kl"], rel=1e-2,
                                                   abs=1e-7)


def test_flat_adam_steps_like_torch_adam():
    from mpirl.algos.optim import FlatAdam
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(100), requires_grad=False)
    theirs = torch.nn.Parameter(ours.detach().clone())
    flat = FlatAdam(ours, lr=0.01)
    reference = torch.optim.Adam([theirs], lr=0.01, eps=1e-5)
    for step in range(20):
        grad = torch.randn(100)
        ours.grad, theirs.grad = grad, grad.clone()
        flat.param_groups[0]["lr"] = reference.param_groups[0]["lr"] = 0.01 * (1 - step / 20)
        flat.step()
        reference.step()
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-6)
    again = FlatAdam(torch.nn.Parameter(torch.zeros(100), requires_grad=False), lr=1.0)
    again.load_state_dict(flat.state_dict())
    assert again.steps == 20 and torch.equal(again.exp_avg_sq, flat.exp_avg_sq)


def test_a_bf16_cnn_trunk_trains_float32_weights_with_the_float32_gradient():
    from mpirl.nets.actor_critic import CNNActorCritic
    spec = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 6, None, None)
    torch.manual_seed(0)
    full = CNNActorCritic(spec, [64])
    half = CNNActorCritic(spec, [64], precision="bf16")
    half.load_state_dict(full.state_dict())
    obs = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8)
    actions = torch.randint(0, 6, (16,))
    grads = []
    for model in (full, half):
        out, values = model(obs)
        assert out.dtype == values.dtype == torch.float32
        logp, entropy = model.log_prob_entropy(out, actions)
        (-(logp.mean()) + values.pow(2).mean()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(half(obs)[1], full(obs)[1], rtol=0.05, atol=0.02)
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cosine > 0.99, float(cosine)


def test_the_cnn_trains_in_channels_last_with_the_default_layouts_features_and_gradients():
    from mpirl.nets.actor_critic import nature_cnn
    torch.manual_seed(0)
    trunk = nature_cnn((4, 84, 84))
    frames = torch.rand(8, 4, 84, 84)
    seen = []
    hook = trunk[0].register_forward_hook(lambda m, args, out: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))
    results = []
    for forward in (trunk, lambda x: torch.nn.Sequential.forward(trunk, x)):
        trunk.zero_grad()
        features = forward(frames)
        features.square().mean().backward()
        results.append((features.detach(), [p.grad.clone() for p in trunk.parameters()]))
    with torch.no_grad():
        trunk(frames)  # inference passes keep the default layout (faster there)
    hook.remove()
    assert seen == [True, False, False]
    (a, grads_a), (b, grads_b) = results
    torch.testing.assert_close(a, b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def test_auto_precision_computes_in_bfloat16_only_on_cpus_that_do_it_natively():
    from mpirl.nets.actor_critic import CNNActorCritic, auto_bf16, native_bf16
    spec = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 6, None, None)
    torch.manual_seed(0)
    models = {p: CNNActorCritic(spec, [64], precision=p) for p in ("fp32", "bf16", "auto")}
    for model in models.values():
        model.load_state_dict(models["fp32"].state_dict())
    obs = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        out = {p: model(obs)[0] for p, model in models.items()}
    assert not torch.equal(out["fp32"], out["bf16"])  # the two arithmetics differ
    native = native_bf16("cpu")
    assert torch.equal(out["auto"], out["bf16" if native else "fp32"])
    assert not native_bf16("no-such-device")
    assert auto_bf16("cpu") == native
    assert not auto_bf16("no-such-device")


def test_auto_precision_keeps_fp32_on_a_gpu_that_has_bfloat16(monkeypatch):
    # on an H200, fp32 (TF32 convolutions) trained the Nature CNN faster than bf16 autocast
    from mpirl.nets import actor_critic
    monkeypatch.setattr(actor_critic, "_cuda_bf16", lambda: True)
    assert actor_critic.native_bf16("cuda")
    assert not actor_critic.auto_bf16("cuda")


def test_bf16_where_it_is_emulated_is_a_start_up_note_and_auto_fits_any_policy():
    from types import SimpleNamespace

    from mpirl.algos.actor_critic import check_precision
    from mpirl.config.fields import ConfigError
    from mpirl.nets.actor_critic import native_bf16
    frames = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 6, None, None)
    vector = EnvSpec((4,), np.dtype(np.float32), True, 2, None, None)

    def notes(precision, spec):
        setup = SimpleNamespace(cfg=SimpleNamespace(precision=precision, device="cpu",
                                                    env="E", algo="ppo"),
                                spec=spec, notes=[])
        check_precision(setup)
        return setup.notes

    assert notes("auto", frames) == notes("auto", vector) == notes("fp32", frames) == []
    emulated = notes("bf16", frames)
    if native_bf16("cpu"):
        assert emulated == []
    else:
        assert len(emulated) == 1 and "bfloat16 is emulated on this CPU" in emulated[0]
        assert "--precision auto" in emulated[0]
    with pytest.raises(ConfigError, match="applies to the CNN policy"):
        notes("bf16", vector)
