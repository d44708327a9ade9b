"""PPO and normalization statistics across learners. Run with: mpirun -n K python -m pytest
--with-mpi -m mpi. Every test passes at any world size (including 1)."""
import numpy as np
import pytest
import torch

from mpirl import comm
from mpirl.acting.envs import EnvSpec
from mpirl.algos.moments import Moments
from mpirl.algos.normalization import RolloutNormalization, merge_over
from mpirl.algos.ppo.update import PPO
from mpirl.config.sources import parse_config
from mpirl.nets.actor_critic import ActorCritic

pytestmark = pytest.mark.mpi

SPEC = EnvSpec((3,), np.dtype(np.float32), True, 2, None, None)
T = 6


def _part(rank: int, iteration: int) -> dict[str, np.ndarray]:
    """Rank ``rank``'s rollout in ``iteration``: 2 + rank envs, a different distribution per
    rank, so that per-rank statistics differ from the global ones."""
    rng = np.random.default_rng([rank, iteration])
    n = 2 + rank
    return {"obs": rng.normal(rank, 1.0 + rank, (T + 1, n, 3)).astype(np.float32),
            "actions": rng.integers(0, 2, (T, n)),
            "rewards": rng.normal(rank, 1.0, (T, n)).astype(np.float32),
            "dones": (rng.random((T, n)) < 0.2).astype(np.float32),
            "bootstrap": np.zeros((T, n), np.float32)}


def _discounted(parts: list[dict], gamma: float) -> np.ndarray:
    """Discounted returns of one rank's streams over successive rollouts, by hand."""
    running = np.zeros(parts[0]["rewards"].shape[1])
    out = []
    for p in parts:
        for t in range(T):
            running = running * gamma + p["rewards"][t]
            out.append(running.copy())
            running[p["dones"][t] > 0] = 0.0
    return np.concatenate(out)


def test_synchronized_statistics_equal_those_of_one_process_that_saw_all_the_data():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    cfg = parse_config(["--algo", "ppo", "--normalize-obs", "--normalize-reward"])
    model = ActorCritic(SPEC, [8], obs_norm=True)
    norm = RolloutNormalization(cfg, model, world, streams=2 + rank)
    iterations = 3
    for i in range(iterations):
        norm.prepare(_part(rank, i))
        norm.publish()
    everything = [[_part(r, i) for i in range(iterations)] for r in range(size)]
    obs = np.concatenate([p["obs"][:T].reshape(-1, 3) for parts in everything for p in parts])
    returns = np.concatenate([_discounted(parts, cfg.gamma) for parts in everything])
    assert norm.obs.count == len(obs) and norm.ret.count == len(returns)
    np.testing.assert_allclose(norm.obs.mean, obs.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.obs.var, obs.astype(np.float64).var(0), rtol=1e-10)
    np.testing.assert_allclose(norm.ret.mean, returns.mean(), rtol=1e-10)
    np.testing.assert_allclose(norm.ret.var, returns.var(), rtol=1e-10)
    np.testing.assert_allclose(model.normalizer.var.numpy(), obs.var(0), rtol=1e-5)
    # every learner holds bit-identical statistics
    mine = np.concatenate([norm.obs.pack(), norm.ret.pack()])
    every = comm.allgather_(world, mine)
    assert all(np.array_equal(row, mine) for row in every)


def test_ppo_learners_end_with_the_weights_of_one_learner_on_the_joint_batch():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    cfg = parse_config(["--algo", "ppo", "--n-epochs", "3", "--lr", "0.01",
                        "--clip-range-vf", "0.5", "--ent-coef", "0.01"])
    parts = [_part(r, 0) for r in range(size)]
    envs = [p["rewards"].shape[1] for p in parts]

    def ppo(comm_, share):
        torch.manual_seed(0)
        model = ActorCritic(SPEC, [16, 16])
        params = comm.FlatParameters(model)
        averager = comm.GradientAverager(model.parameters(), comm_, share,
                                         extras=("approx_kl",))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-5)
        return PPO(cfg, model, averager, opt, minibatches=1,
                   merge=lambda m: merge_over(comm_, [m])[0]), params

    learner, params = ppo(world, envs[rank] / sum(envs))
    stats = learner.update(parts[rank], 0.2, np.random.default_rng(0))
    reference, ref_params = ppo(None, 1.0)
    joint = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
    ref_stats = reference.update(joint, 0.2, np.random.default_rng(0))
    assert len(stats) == len(ref_stats) == 3
    torch.testing.assert_close(params.vector, ref_params.vector, rtol=1e-4, atol=1e-6)
    # the approximate KL is averaged over learners: every learner reports the global one
    assert stats[-1]["approx_kl"] == pytest.approx(ref_stats[-1]["approx_kl"], rel=1e-3,
                                                   abs=1e-7)


def test_merge_over_gives_every_rank_the_global_moments():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    local = np.random.default_rng(rank).normal(rank, 1.0, (10 + rank, 2))
    merged = merge_over(world, [Moments.of(local, (2,))])[0]
    everything = np.concatenate([np.random.default_rng(r).normal(r, 1.0, (10 + r, 2))
                                 for r in range(size)])
    np.testing.assert_allclose(merged.mean, everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.var, everything.var(0), rtol=1e-10)
