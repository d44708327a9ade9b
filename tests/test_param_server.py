"""The sharded parameter server: sharding arithmetic, update rules, and (under MPI) that
asynchronous pushes through S servers compute what sequential training computes.

The MPI tests pass at any world size: they use as many ranks as they need and skip otherwise.
"""
import numpy as np
import pytest
import torch

from mpirl import comm
from mpirl.config.schema import Config
from mpirl.execution.layout import plan_server_layout
from mpirl.execution.server.worker import WorkerRank
from mpirl.execution.setup import RunSetup
from mpirl.ps import OptimizerRule, ParameterClient, ParameterServer, SGDRule, shard_bounds


@pytest.mark.parametrize("numel,servers", [(10, 1), (10, 3), (7, 7), (4610, 4), (3, 5)])
def test_shards_are_contiguous_and_even(numel, servers):
    bounds = shard_bounds(numel, servers)
    assert len(bounds) == servers
    assert bounds[0][0] == 0 and bounds[-1][1] == numel
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_optimizer_on_slices_equals_optimizer_on_the_whole(kind):
    """The rules are elementwise: S servers stepping their slices hold exactly the vector
    one server stepping all of it holds."""
    rng = np.random.default_rng(0)
    whole = rng.standard_normal(1001).astype(np.float32)
    parts = whole.copy()
    one = OptimizerRule(whole, kind, lr=1e-2)
    sliced = [(lo, hi, OptimizerRule(parts[lo:hi], kind, lr=1e-2))
              for lo, hi in shard_bounds(len(whole), 3)]
    for _ in range(20):
        g = rng.standard_normal(len(whole)).astype(np.float32)
        one.apply(g)
        for lo, hi, rule in sliced:
            rule.apply(g[lo:hi].copy())
    assert np.array_equal(whole, parts)


def test_sgd_rule_is_a_tabular_step():
    q = np.zeros(4, dtype=np.float32)
    SGDRule(q, lr=0.5).apply(np.array([-2.0, 0.0, 1.0, 0.0], dtype=np.float32))
    assert q.tolist() == [1.0, 0.0, -0.5, 0.0]


def test_server_layout_rejects_no_workers():
    with pytest.raises(Exception, match="leaves no worker"):
        plan_server_layout(3, 3)
    lay = plan_server_layout(5, 2)
    assert [lay.role(r) for r in range(5)] == ["server"] * 2 + ["worker"] * 3


# ------------------------------------------------------------------------------- under MPI
def _setup(servers: int, size: int) -> RunSetup:
    cfg = Config(algo="a3c", n_steps=5, envs_per_actor=2, hidden_sizes=[16, 16],
                 optimizer="rmsprop", lr=1e-2, servers=servers)
    return RunSetup(cfg, plan_server_layout(size, servers))


def _sequential(setup: RunSetup, worker_rank: int, pushes: int) -> np.ndarray:
    """One process: the same worker's rollouts, each gradient applied at once."""
    worker = WorkerRank(setup, worker_rank)
    rule = OptimizerRule(worker.values, setup.cfg.optimizer, setup.cfg.lr)
    for _ in range(pushes):
        worker.step()
        rule.apply(worker.grad.copy())
    return worker.values.copy()


def _run(sub, setup: RunSetup, pushes: int) -> tuple[np.ndarray | None, list | None]:
    """Servers serve, the one worker pushes ``pushes`` gradients; returns the worker's final
    vector (on the worker) and every server's (slice, stats) (on rank 0 of ``sub``)."""
    lay = setup.layout
    servers, rank = list(range(lay.learners)), sub.Get_rank()
    bounds = shard_bounds(setup.n_params, lay.learners)
    vector = None
    if lay.is_learner(rank):
        lo, hi = bounds[rank]
        values = comm.FlatParameters(setup.make_policy("cpu")).vector.numpy()[lo:hi].copy()
        rule = OptimizerRule(values, setup.cfg.optimizer, setup.cfg.lr)
        stats = ParameterServer(sub, rank, servers, [lay.learners], values, rule).serve()
        mine = (values, stats)
    else:
        worker = WorkerRank(setup, rank)
        client = ParameterClient(sub, servers, bounds)
        for _ in range(pushes):
            worker.step()
            client.exchange(worker.grad, worker.values)
        client.bye()
        vector, mine = worker.values.copy(), None
    parts = comm.gather_to_root(sub, mine)
    return vector, (parts[:lay.learners] if parts is not None else None)


@pytest.mark.mpi
@pytest.mark.parametrize("servers", [1, 2])
def test_pushes_through_servers_equal_sequential_training(servers):
    """1 worker: every gradient is computed from the newest weights, so S servers end with
    exactly the vector sequential training gives, and their slices reassemble the
    worker's copy."""
    world = comm.world()
    need = servers + 1
    if world.Get_size() < need:
        pytest.skip(f"needs {need} ranks")
    sub = world.Split(0 if world.Get_rank() < need else 1, key=world.Get_rank())
    try:
        if world.Get_rank() >= need:
            return
        setup = _setup(servers, need)
        pushes = 12
        vector, parts = _run(sub, setup, pushes)
        if vector is not None:
            assert np.array_equal(vector, _sequential(setup, servers, pushes))
        # rank 0 holds the gathered slices; the worker sends its vector there to compare
        worker_vector = comm.broadcast_object(sub, vector if sub.Get_rank() == servers
                                              else None, root=servers)
        if parts is not None:
            assert np.array_equal(np.concatenate([p[0] for p in parts]), worker_vector)
            assert [p[1].updates for p in parts] == [pushes] * servers
            assert all(p[1].staleness_max == 0 and p[1].dropped == 0 for p in parts)
    finally:
        sub.Free()


@pytest.mark.mpi
def test_two_workers_on_one_server_count_staleness():
    """Workers that do not wait for each other: every gradient is applied once, and a
    gradient's staleness counts the other worker's updates in between."""
    world = comm.world()
    if world.Get_size() < 3:
        pytest.skip("needs 3 ranks")
    sub = world.Split(0 if world.Get_rank() < 3 else 1, key=world.Get_rank())
    try:
        if world.Get_rank() >= 3:
            return
        setup = _setup(1, 3)
        rank = sub.Get_rank()
        pushes = 10
        if rank == 0:
            values = comm.FlatParameters(setup.make_policy("cpu")).vector.numpy().copy()
            rule = OptimizerRule(values, "rmsprop", 1e-2)
            stats = ParameterServer(sub, 0, [0], [1, 2], values, rule).serve()
            assert stats.updates == 2 * pushes and stats.dropped == 0
            assert 0 < stats.staleness_sum <= 2 * pushes  # the other one's update, at most
            assert stats.staleness_max <= pushes * 2
        else:
            worker = WorkerRank(setup, rank)
            client = ParameterClient(sub, [0], [(0, setup.n_params)])
            for _ in range(pushes):
                worker.step()
                client.exchange(worker.grad, worker.values)
            client.bye()
            assert int(client.versions[0]) >= pushes
    finally:
        sub.Free()


def test_worker_gradient_is_the_a2c_gradient():
    """A worker's pushed gradient is A2C's on its rollout: one sequential step with it equals
    one A2C update (no averaging, same clipping)."""
    setup = _setup(1, 2)
    worker = WorkerRank(setup, 1)
    before = worker.values.copy()
    worker.step()
    grad = torch.from_numpy(worker.grad.copy())
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert float(torch.linalg.vector_norm(grad)) <= setup.cfg.max_grad_norm + 1e-4
    assert np.array_equal(worker.values, before)  # a gradient only: weights untouched
