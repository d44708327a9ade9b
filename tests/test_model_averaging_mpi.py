"""Model averaging (--sync average) across learners. Run with: mpirun -n K python -m pytest
--with-mpi -m mpi. Every test passes at any world size (including 1)."""
import numpy as np
import pytest
import torch

from mpirl import comm
from mpirl.algos.api import Control
from mpirl.comm.gradsync import optimizer_tensors

pytestmark = pytest.mark.mpi


def _learner(rank: int, every: int):
    torch.manual_seed(0)  # the same initial weights everywhere
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    extra = torch.full((4,), float(rank))  # a tensor held alike, like a target network
    control = Control()
    share = (1 + rank) / sum(1 + r for r in range(comm.world().Get_size()))
    averager = comm.GradientAverager(model.parameters(), comm.world(), share, control=control,
                                     average_every=every, shared=lambda: [extra])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    return model, extra, control, averager, optimizer


def _step(model, averager, optimizer, rank: int, update: int, poison: bool = False):
    """One local update on this learner's own data."""
    g = torch.Generator().manual_seed(1000 * rank + update)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g) + rank
    averager.announce()
    loss = (model(x) - y).pow(2).mean()
    if poison:
        loss = loss * float("nan")
    averager.zero_grad()
    averager.backward(loss)
    averager.average()
    averager.clip_norm_(10.0)
    assert averager.finite  # never a skip that would put this learner out of step
    optimizer.step()


def _flat(model) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def test_after_every_averaging_step_the_learners_hold_identical_weights():
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    every = 3
    model, extra, control, averager, optimizer = _learner(rank, every)
    shares = comm.allgather_(world, np.array([averager.model_share]))[:, 0]
    assert averager.share == 1.0  # each learner's gradient is of its own mean loss
    for update in range(2 * every + 1):
        _step(model, averager, optimizer, rank, update)
        before = _flat(model)
        everyone_before = comm.allgather_(world, before)
        control.local[:] = (float(rank == size - 1 and update == every - 1), 0.0)
        averager.stepped()
        weights = comm.allgather_(world, _flat(model))
        if (update + 1) % every == 0:
            assert all(np.array_equal(weights[0], w) for w in weights), \
                f"weights differ across learners after the averaging step at update {update}"
            expected = (shares[:, None] * everyone_before.astype(np.float64)).sum(0)
            np.testing.assert_allclose(weights[0], expected, rtol=1e-5, atol=1e-6)
            # the shared tensor too, and the control values were summed in the same allreduce
            np.testing.assert_allclose(extra.numpy(), (shares * np.arange(size)).sum(),
                                       rtol=1e-6)
            extra.fill_(float(rank))
            assert control.reduced and control.summed[0] == (1.0 if update < every else 0.0)
            control.reduced = False
        else:
            assert np.array_equal(weights[rank], before)  # no averaging between steps
            if size > 1:
                assert not np.array_equal(weights[0], weights[1])
    assert averager.averaging_steps == 2
    # a forced averaging step (before an evaluation or a checkpoint) after the odd update
    averager.synchronize()
    weights = comm.allgather_(world, _flat(model))
    assert all(np.array_equal(weights[0], w) for w in weights)
    assert averager.averaging_steps == 3
    averager.synchronize()  # nothing since the last one: no collective, nothing changes
    assert averager.averaging_steps == 3


def test_a_non_finite_update_is_counted_on_every_learner_at_the_next_averaging_step():
    world = comm.world()
    rank = world.Get_rank()
    every = 2
    model, _, _, averager, optimizer = _learner(rank, every)
    for update in range(2 * every):
        _step(model, averager, optimizer, rank, update, poison=(rank == 0 and update == 2))
        averager.stepped()
        assert np.isfinite(_flat(model)).all()
        assert averager.skipped == (1 if update >= 3 else 0)


def test_optimizer_moments_are_found_for_averaging():
    model = torch.nn.Linear(3, 2)
    adam = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    adam.step()
    assert len(optimizer_tensors(adam)) == 4  # exp_avg and exp_avg_sq of weight and bias
