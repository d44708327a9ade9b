"""Random network distillation (``--intrinsic rnd``): the intrinsic return that runs across
episode ends, the advantages of two value heads, the random-action start of the statistics,
novelty, and the statistics merged over learners (under mpirun)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mpirl.acting.collect import RolloutCollector
from mpirl.acting.envs import EnvSpec, EnvVector
from mpirl.acting.messages import PackedArrays, report_fields
from mpirl.algos import actor_critic
from mpirl.algos.moments import Moments
from mpirl.algos.ppo.loss import ppo_loss
from mpirl.algos.ppo.update import PPO
from mpirl.algos.returns import running_returns
from mpirl.algos.rnd import INIT_FIELD, SOURCE_FIELD, RandomStartCollector
from mpirl.algos.rnd_learning import RND
from mpirl.config.sources import parse_config
from mpirl.nets.actor_critic import ActorCritic

SPEC = EnvSpec((3,), np.dtype(np.float32), True, 2, None, None)
RND_ARGS = ["--algo", "ppo", "--intrinsic", "rnd"]


def test_the_intrinsic_return_runs_on_across_episode_ends():
    rewards = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    dones = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    carry = np.array([10.0, 0.0])
    g = 0.5
    episodic, after = running_returns(carry, rewards, g, dones)
    np.testing.assert_allclose(episodic[:, 0], [6.0, 6.0, 5.0])  # 10g+1, 6g+3; reset; 5
    np.testing.assert_allclose(episodic[:, 1], [2.0, 4.0, 8.0])  # 2; reset; 4; 4g+6
    np.testing.assert_allclose(after, [5.0, 8.0])
    non_episodic, after = running_returns(carry, rewards, g)
    np.testing.assert_allclose(non_episodic[:, 0], [6.0, 6.0, 8.0])
    np.testing.assert_allclose(non_episodic[:, 1], [2.0, 5.0, 8.5])
    np.testing.assert_allclose(after, [8.0, 8.5])


def test_extrinsic_advantages_stop_at_episode_ends_and_intrinsic_ones_do_not():
    """lambda 1: each advantage is a discounted sum of rewards to the rollout's end (or to the
    episode's end, extrinsic), plus the discounted bootstrap value, minus the value."""
    cfg = parse_config([*RND_ARGS, "--gamma", "0.9", "--int-gamma", "0.5", "--gae-lambda",
                        "1", "--ext-coef", "2", "--int-coef", "3", "--no-normalize-advantage"])
    T = 3
    batch = {"rewards": np.array([[1.0], [2.0], [4.0]], np.float32),
             "int_rewards": np.array([[8.0], [16.0], [32.0]], np.float32),
             "dones": np.array([[0.0], [1.0], [0.0]], np.float32),
             "bootstrap": np.zeros((T, 1), np.float32)}
    values = np.zeros((T + 1, 1, 2), np.float32)
    values[T, 0] = [100.0, 1000.0]  # the bootstrap values of both heads
    owner = SimpleNamespace(cfg=cfg, intrinsic=object(), merge=lambda m: m)
    adv, ret = PPO._advantages(owner, batch, values)
    ext = [1 + 0.9 * 2, 2, 4 + 0.9 * 100]  # the episode ends after step 1
    intr = [8 + 0.5 * 16 + 0.25 * 32 + 0.125 * 1000, 16 + 0.5 * 32 + 0.25 * 1000,
            32 + 0.5 * 1000]
    np.testing.assert_allclose(ret[:, 0], ext, rtol=1e-6)
    np.testing.assert_allclose(ret[:, 1], intr, rtol=1e-6)
    np.testing.assert_allclose(adv, 2 * np.array(ext) + 3 * np.array(intr), rtol=1e-6)


def test_two_value_heads_add_their_errors():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    returns = torch.tensor([[2.0, 0.0], [3.0, 1.0]])
    zeros = torch.zeros(2)
    loss = ppo_loss(zeros, zeros, zeros, values, values, returns, zeros, 0.2, None, 1.0, 0.0)
    assert loss.value.item() == pytest.approx(((1 + 4) + (0 + 9)) / 2)


def test_the_policy_gets_an_intrinsic_value_head():
    cfg = parse_config([*RND_ARGS, "--env", "CartPole-v1"])
    model = actor_critic.policy(cfg, SPEC)
    obs = torch.zeros(5, 3)
    _, values = model(obs)
    assert values.shape == (5, 2)
    assert model.value(obs).shape == (5,)  # what truncated episodes bootstrap from
    torch.testing.assert_close(model.value(obs), values[:, 0])
    plain = actor_critic.policy(parse_config(["--algo", "ppo"]), SPEC)
    assert plain(obs)[1].shape == (5,)


def _rollout_buffer(cfg, spec):
    return PackedArrays({**actor_critic.rollout_message(cfg, spec), **report_fields()})


def test_the_first_rollout_follows_random_steps_whose_statistics_it_carries():
    cfg = parse_config([*RND_ARGS, "--env", "MountainCar-v0", "--n-steps", "4",
                        "--envs-per-actor", "2", "--rnd-init-steps", "50"])
    envs = EnvVector("MountainCar-v0", 2, seed=3, rank=0)
    model = ActorCritic(envs.spec, [8], value_heads=2)
    rng = np.random.default_rng(0)
    inner = RolloutCollector(model, envs, cfg.n_steps, cfg.gamma, rng)
    collector = RandomStartCollector(inner, envs.spec, cfg.rnd_init_steps, rng)
    out = _rollout_buffer(cfg, envs.spec)
    before = envs.obs.copy()
    collector.collect(out)
    first = Moments.unpack(out[INIT_FIELD], (2,))
    assert first.count == 50 * 2
    # the random steps moved the cars before the rollout began
    assert not np.array_equal(out["obs"][0], before)
    assert first.var[1] > 0  # they picked up speed
    collector.collect(out)
    assert Moments.unpack(out[INIT_FIELD], (2,)).count == 0
    # a resumed actor does not take its random steps again
    again = RandomStartCollector(inner, envs.spec, cfg.rnd_init_steps, rng)
    again.load_state_dict(collector.state_dict(), epoch=1)
    again.collect(out)
    assert Moments.unpack(out[INIT_FIELD], (2,)).count == 0
    envs.close()


def _rnd(args=(), comm=None, spec=SPEC, rng=None):
    cfg = parse_config([*RND_ARGS, *args])
    return RND(cfg, spec, torch.device("cpu"), comm, rng)


def test_every_learner_builds_the_same_target_from_the_seed():
    a, b, c = _rnd(["--seed", "3"]), _rnd(["--seed", "3"]), _rnd(["--seed", "4"])
    wa, wb, wc = (dict(x.nets.target.named_parameters()) for x in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert not any(p.requires_grad for p in a.nets.target.parameters())


def test_novel_observations_earn_more_intrinsic_reward_than_familiar_ones():
    """After the predictor trains on one region, observations from it earn a fraction of the
    reward of observations far from it."""
    torch.manual_seed(0)
    rnd = _rnd(["--rnd-update-proportion", "1"])
    rng = np.random.default_rng(0)
    familiar = rng.normal(0.0, 1.0, (256, 3)).astype(np.float32)
    novel = rng.normal(0.0, 1.0, (256, 3)).astype(np.float32) + np.float32([3.0, -3.0, 3.0])
    rnd.obs.merge(Moments.of(np.concatenate([familiar, novel]), (3,)))
    optimizer = torch.optim.Adam(rnd.parameters(), lr=1e-3)
    rnd.inputs = rnd._normalize(familiar)
    for _ in range(300):
        optimizer.zero_grad()
        rnd.loss().backward()
        optimizer.step()
    with torch.no_grad():
        seen = rnd.nets.error(rnd._normalize(familiar)).mean().item()
        new = rnd.nets.error(rnd._normalize(novel)).mean().item()
    assert new > 5 * seen


def test_unrolls_of_one_sender_in_one_batch_continue_each_others_intrinsic_return():
    """A streaming learner's batch may hold two unrolls of the same actor's envs, in the order
    they were sent: the second continues the first's returns; another sender's start anew."""
    rnd = _rnd(["--int-gamma", "0.5"])
    T, n = 4, 2
    raw = np.random.default_rng(3).random((T, 3 * n))
    rnd.blocks = [(7, n), (1, n), (7, n)]
    out = rnd._returns(raw)
    first, second = running_returns(np.zeros(n), np.concatenate([raw[:, :n], raw[:, 2 * n:]]),
                                    0.5)[0].reshape(2, T, n)
    np.testing.assert_allclose(out[:, :n], first)
    np.testing.assert_allclose(out[:, 2 * n:], second)
    np.testing.assert_allclose(out[:, n:2 * n], running_returns(np.zeros(n), raw[:, n:2 * n],
                                                                0.5)[0])
    np.testing.assert_allclose(rnd.returns[7], second[-1])


def test_the_predictor_trains_on_its_share_of_each_minibatch():
    rnd = _rnd(["--rnd-update-proportion", "0.25"], rng=np.random.default_rng(7))
    rnd.inputs = torch.randn(400, 3)
    errors = rnd.nets.error(rnd.inputs).detach()
    loss = rnd.loss().item()
    keep = np.random.default_rng(7).random(400) < 0.25
    assert loss == pytest.approx(errors[torch.from_numpy(keep)].mean().item(), rel=1e-5)
    assert 60 < keep.sum() < 140


# ---------------------------------------------------------------------- over learners
def _part(rank: int, iteration: int, T: int = 5) -> dict[str, np.ndarray]:
    """Rank ``rank``'s batch in ``iteration``: 2 + rank env streams, each rank's observations
    drawn from a different distribution."""
    rng = np.random.default_rng([rank, iteration, 11])
    n = 2 + rank
    return {"obs": rng.normal(rank, 1.0 + rank, (T + 1, n, 3)).astype(np.float32),
            "rewards": np.zeros((T, n), np.float32),
            "dones": (rng.random((T, n)) < 0.3).astype(np.float32)}


def _random_start(rank: int, T: int = 5) -> dict:
    """Acting rank ``rank``'s first message, whose random steps saw these observations."""
    rng = np.random.default_rng([rank, 99])
    return {INIT_FIELD: Moments.of(rng.normal(-rank, 2.0, (40, 3)), (3,)).pack(),
            SOURCE_FIELD: np.array([rank]), "rewards": np.zeros((T, 2 + rank), np.float32)}


@pytest.mark.mpi
def test_rnd_statistics_merged_over_learners_equal_those_of_one_process_that_saw_all():
    """Observation statistics (random steps included), the intrinsic return statistics and the
    scaled intrinsic rewards are those of one process with every rank's env streams."""
    from mpirl import comm
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    mine = _rnd(comm=world)
    alone = _rnd()
    mine.take_in([_random_start(rank)])
    alone.take_in([_random_start(r) for r in range(size)])
    first = sum(2 + r for r in range(rank))
    for i in range(3):
        part = _part(rank, i)
        mine.prepare(part)
        parts = [_part(r, i) for r in range(size)]
        whole = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
        alone.prepare(whole)
        np.testing.assert_allclose(part["int_rewards"],
                                   whole["int_rewards"][:, first:first + 2 + rank], rtol=1e-5)
    assert mine.obs.count == alone.obs.count == 40 * size + 3 * 5 * sum(
        2 + r for r in range(size))
    np.testing.assert_allclose(mine.obs.mean, alone.obs.mean, rtol=1e-10)
    np.testing.assert_allclose(mine.obs.var, alone.obs.var, rtol=1e-10)
    assert mine.ret.count == alone.ret.count
    np.testing.assert_allclose(mine.ret.mean, alone.ret.mean, rtol=1e-6)
    np.testing.assert_allclose(mine.ret.var, alone.ret.var, rtol=1e-6)
    row_mine, row_alone = mine.row(), alone.row()
    assert row_mine["intrinsic_reward"] == pytest.approx(row_alone["intrinsic_reward"],
                                                          rel=1e-6)
    # and bit for bit the same on every learner
    gathered = world.allgather((mine.obs.mean.tobytes(), mine.ret.var.tobytes()))
    assert all(g == gathered[0] for g in gathered)
