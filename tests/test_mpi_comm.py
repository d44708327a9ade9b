"""Communication layer under MPI. Run with: mpirun -n K python -m pytest --with-mpi -m mpi.

Every test passes at any world size (including 1).
"""
import numpy as np
import pytest
import torch

from mpirl import comm
from mpirl.acting.envs import EnvSpec
from mpirl.algos.a2c.loss import A2C
from mpirl.config.schema import Config
from mpirl.nets.actor_critic import ActorCritic

pytestmark = pytest.mark.mpi

SPEC = EnvSpec((4,), np.dtype(np.float32), True, 2, None, None)


def _batch(seed: int, T: int, N: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"obs": rng.standard_normal((T + 1, N, 4)).astype(np.float32),
            "actions": rng.integers(0, 2, (T, N)),
            "rewards": rng.standard_normal((T, N)).astype(np.float32),
            "dones": (rng.random((T, N)) < 0.1).astype(np.float32),
            "bootstrap": np.zeros((T, N), dtype=np.float32)}


def _learner(cfg: Config, comm_, share=None):
    torch.manual_seed(0)
    model = ActorCritic(SPEC, [16, 16])
    params = comm.FlatParameters(model)
    opt = torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=0.99, eps=1e-5, foreach=True)
    return A2C(cfg, model, comm.GradientAverager(model.parameters(), comm_, share), opt), params


def test_allreduce_and_point_to_point():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    x = np.full(5, rank + 1.0)
    comm.allreduce_sum_(world, x)
    assert np.all(x == size * (size + 1) / 2)
    if size > 1:
        buf = np.zeros(3)
        if rank == 0:
            comm.wait(comm.isend_all(world, np.arange(3.0), list(range(1, size)), tag=5))
        else:
            comm.recv(world, buf, source=0, tag=5)
            assert list(buf) == [0.0, 1.0, 2.0]


def test_averaged_update_equals_one_process_on_all_batches():
    """L learners with allreduce end with the weights one process gets from the mean gradient
    over the same batches; uneven batch sizes are weighted by their share."""
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    cfg = Config(n_steps=4, max_grad_norm=0.5, lr=1e-2)
    T, sizes = 4, [3 + r for r in range(size)]  # uneven: learner r has 3 + r envs
    total = sum(sizes)
    learner, params = _learner(cfg, world, share=sizes[rank] / total)
    reference, ref_params = _learner(cfg, None)
    for step in range(3):
        batches = [_batch(100 * step + r, T, sizes[r]) for r in range(size)]
        learner.update(batches[rank])
        joint = {k: np.concatenate([b[k] for b in batches], axis=1) for k in batches[0]}
        reference.update(joint)
    np.testing.assert_allclose(params.vector.numpy(), ref_params.vector.numpy(), atol=2e-6)
    gathered = comm.gather_objects(world, params.vector.numpy().copy())
    for other in gathered:  # and every learner holds identical weights
        np.testing.assert_array_equal(other, gathered[0])


def test_broadcast_parameters_makes_weights_identical():
    world = comm.world()
    torch.manual_seed(world.Get_rank())  # different weights on every rank
    params = comm.FlatParameters(ActorCritic(SPEC, [8]))
    comm.broadcast_parameters(params, world)
    gathered = comm.gather_objects(world, params.vector.numpy().copy())
    for other in gathered:
        np.testing.assert_array_equal(other, gathered[0])


def test_first_error_is_agreed_by_every_rank():
    world = comm.world()
    size = world.Get_size()
    message, failing = comm.first_error(world, "boom" if world.Get_rank() == size - 1 else None)
    assert message == "boom" and failing == [size - 1]
    assert comm.first_error(world, None) == (None, [])


def test_control_slots_and_the_nonfinite_verdict_are_shared_by_all_learners():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    cfg = Config(n_steps=4)
    learner, params = _learner(cfg, world)
    averager = learner.averager
    before = params.vector.clone()
    batch = _batch(rank, 4, 3)
    if rank == size - 1:
        batch["rewards"][:] = np.nan  # one learner's loss goes bad
    averager.extras[:] = 0
    stats = learner.update(batch)
    assert stats["skipped"] and not averager.finite  # every learner skips the update
    assert torch.equal(params.vector, before)
    averager = comm.GradientAverager(learner.model.parameters(), world,
                                     extras=("from_rank_0", "one"))
    averager.extras[averager.slots["from_rank_0"]] = float(rank == 0)
    averager.extras[averager.slots["one"]] = 1.0
    averager.zero_grad()
    averager.average()
    assert averager.extras.tolist() == [1.0, float(size)]


def test_staged_averaging_the_gpu_path_gives_what_the_in_place_one_gives():
    """Learners on a GPU stage the gradient through a host array that also holds the control
    values and extras; staged on the CPU here, it must give the same sums and verdicts."""
    from mpirl.algos.api import Control
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    results = []
    for staged in (False, True):
        torch.manual_seed(0)
        model = ActorCritic(SPEC, [16, 16])
        control = Control()
        averager = comm.GradientAverager(model.parameters(), world, share=1.0 / size,
                                         extras=("kl",), control=control, staged=staged)
        assert (averager._host is not None) == staged
        control.local[:] = (float(rank == 0), 2.0)
        averager.extras[averager.slots["kl"]] = 0.5 * rank
        obs = torch.from_numpy(_batch(rank, 4, 3)["obs"].reshape(-1, 4))
        averager.zero_grad()
        out, values = model(obs)
        averager.backward(out.pow(2).mean() + values.pow(2).mean())
        averager.average()
        results.append((averager.flat.clone(), control.summed.copy(), control.reduced,
                        float(averager.extras[0]), averager.finite))
        averager.zero_grad()
        bad = model(obs)[1].mean() * (float("nan") if rank == size - 1 else 1.0)
        averager.backward(bad)
        averager.average()
        assert not averager.finite  # one learner's loss went bad: every learner sees it
    (flat, summed, reduced, kl, finite), staged_result = results
    assert torch.equal(flat, staged_result[0]) and flat.abs().sum() > 0
    assert summed.tolist() == staged_result[1].tolist() == [1.0, 2.0 * size]
    assert reduced and staged_result[2] and finite and staged_result[4]
    assert kl == staged_result[3] == 0.5 * size * (size - 1) / 2


def test_a_wait_that_outlasts_the_comm_timeout_names_the_missing_rank():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    if size == 1:
        return
    comm.set_comm_timeout(0.3)
    try:
        if rank == 0:
            buf = np.zeros(1)
            req = world.Irecv(buf, source=size - 1, tag=99)  # never sent
            with pytest.raises(comm.CommTimeout,
                               match=rf"waited 0 s \(--comm-timeout 0.3\) for a reply "
                                     rf"from rank {size - 1}"):
                comm.wait([req], what="a reply", peers=[size - 1])
            req.Cancel()
            req.Wait()
    finally:
        comm.set_comm_timeout(0)
    comm.barrier(world)


def _dqn_learner(comm_, share=None):
    from mpirl.algos.dqn.loss import DQN
    from mpirl.algos.dqn.qnetwork import QNetwork
    torch.manual_seed(0)
    model, target = QNetwork(SPEC, [16, 16]), QNetwork(SPEC, [16, 16])
    params = comm.FlatParameters(model)
    averager = comm.GradientAverager(model.parameters(), comm_, share)
    flat = torch.nn.Parameter(params.vector, requires_grad=False)
    flat.grad = averager.flat
    opt = torch.optim.Adam([flat], lr=1e-2, eps=1e-5, fused=True)
    cfg = Config(algo="dqn", max_grad_norm=1.0)
    return DQN(cfg, model, target, averager, opt), params


def _dqn_batch(seed: int, n: int):
    from mpirl.replay import Sample
    rng = np.random.default_rng(seed)
    return Sample(cells=np.arange(n), obs=rng.standard_normal((n, 4)).astype(np.float32),
                  actions=rng.integers(0, 2, n), returns=rng.standard_normal(n).astype(np.float32),
                  next_obs=rng.standard_normal((n, 4)).astype(np.float32),
                  discounts=(rng.random(n) < 0.8).astype(np.float32) * 0.97,
                  weights=rng.random(n).astype(np.float32))


def test_dqn_averaged_update_equals_one_process_on_all_minibatches():
    """DQN learners sampling uneven parts of the global minibatch end, after a few averaged
    updates (with importance weights and a target copy), with the weights one process gets on
    the whole minibatch."""
    from mpirl.replay import Sample
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    sizes = [5 + 3 * r for r in range(size)]
    total = sum(sizes)
    learner, params = _dqn_learner(world, share=sizes[rank] / total)
    reference, ref_params = _dqn_learner(None)
    for step in range(4):
        parts = [_dqn_batch(100 * step + r, sizes[r]) for r in range(size)]
        learner.update(parts[rank], weighted=True)
        joint = Sample(**{f: np.concatenate([getattr(p, f) for p in parts])
                          for f in Sample.__dataclass_fields__ if getattr(parts[0], f) is not None})
        reference.update(joint, weighted=True)
        if step == 1:
            learner.sync_target()
            reference.sync_target()
    np.testing.assert_allclose(params.vector.numpy(), ref_params.vector.numpy(), atol=2e-6)
    gathered = comm.gather_objects(world, params.vector.numpy().copy())
    for other in gathered:
        np.testing.assert_array_equal(other, gathered[0])
