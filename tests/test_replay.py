"""The sum tree and the replay shard: sampling statistics, boundaries, n-step returns."""
import numpy as np
import pytest

from mpirl.replay import ENDED, TERMINATED, VALID, Prioritization, ReplayShard, SumTree


def test_sum_tree_sampling_frequencies_match_priorities():
    tree = SumTree(10)
    priorities = np.array([0, 1, 2, 3, 4, 0, 5, 0, 1, 4], dtype=np.float64)
    tree.set(np.arange(10), priorities)
    assert tree.total == pytest.approx(priorities.sum())
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(1000, rng) for _ in range(200)])
    counts = np.bincount(draws, minlength=10)
    expected = priorities / priorities.sum() * draws.size
    assert counts[priorities == 0].sum() == 0
    # chi-square with 6 degrees of freedom: 22.5 is the 0.999 quantile
    nz = priorities > 0
    chi2 = ((counts[nz] - expected[nz]) ** 2 / expected[nz]).sum()
    assert chi2 < 22.5


def test_sum_tree_boundaries_and_updates():
    tree = SumTree(5)  # not a power of two: 8 leaves, 3 unused
    tree.set([0, 4], [1.0, 3.0])
    assert tree.total == 4.0
    assert list(tree.find([0.0, 0.999, 1.0, 3.999])) == [0, 0, 4, 4]
    tree.set([4], 0.0)  # back to zero: never drawn
    assert tree.total == 1.0
    assert set(tree.sample(100, np.random.default_rng(1))) == {0}
    tree.set([2, 2], [5.0, 7.0])  # a repeated index keeps its last value
    assert tree.get([2])[0] == 7.0 and tree.total == 8.0
    with pytest.raises(IndexError):
        tree.set([5], 1.0)
    with pytest.raises(ValueError):
        tree.set([1], -1.0)
    with pytest.raises(ValueError):
        SumTree(3).sample(4, np.random.default_rng(0))


def test_sum_tree_large_batches_stay_consistent():
    rng = np.random.default_rng(2)
    tree = SumTree(100_000)
    tree.set(np.arange(100_000), rng.random(100_000))
    idx = rng.integers(0, 100_000, 20_000)
    tree.set(idx, rng.random(20_000))
    leaves = tree.get(np.arange(100_000))
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
    for level_start in (1, 2, 4, 1024):  # every internal node is the sum of its children
        nodes = np.arange(level_start, 2 * level_start)
        assert np.allclose(tree.tree[nodes], tree.tree[2 * nodes] + tree.tree[2 * nodes + 1])


def _shard(rows=12, streams=2, n_step=3, gamma=0.5, prio=None):
    return ReplayShard(rows, streams, (1,), np.float32, (), np.int64, n_step, gamma, prio)


def _chunk(t0, T, streams, flags=None):
    obs = (np.arange(t0, t0 + T, dtype=np.float32)[:, None, None]
           + 100 * np.arange(streams, dtype=np.float32)[None, :, None])
    actions = np.zeros((T, streams), dtype=np.int64)
    rewards = np.ones((T, streams), dtype=np.float32)
    f = np.full((T, streams), VALID, dtype=np.uint8) if flags is None else flags
    return obs, actions, rewards, f


def test_n_step_returns_stop_at_episode_ends():
    shard = _shard()
    flags = np.full((8, 2), VALID, dtype=np.uint8)
    flags[2, 0] = VALID | TERMINATED | ENDED   # stream 0 terminates at row 2
    flags[4, 1] = VALID | ENDED                # stream 1 is truncated at row 4 ...
    flags[5, 1] = 0                            # ... and row 5 is its reset row
    shard.add(*_chunk(0, 8, 2, flags))
    # stream 0, row 0: rewards of rows 0, 1, 2, then termination: no bootstrap
    s = shard._transitions(np.array([0 * 2 + 0]), np.ones(1, np.float32))
    assert s.returns[0] == pytest.approx(1 + 0.5 + 0.25) and s.discounts[0] == 0
    # stream 0, row 3: a full window, bootstrap from row 6 with gamma**3
    s = shard._transitions(np.array([3 * 2 + 0]), np.ones(1, np.float32))
    assert s.returns[0] == pytest.approx(1.75) and s.discounts[0] == pytest.approx(0.125)
    assert s.next_obs[0, 0] == 6
    # stream 1, row 3: rows 3, 4 then truncation: bootstrap from the final observation (row 5)
    s = shard._transitions(np.array([3 * 2 + 1]), np.ones(1, np.float32))
    assert s.returns[0] == pytest.approx(1.5) and s.discounts[0] == pytest.approx(0.25)
    assert s.next_obs[0, 0] == 105
    # uniform sampling never returns a reset row or an incomplete window
    cells = shard.sample(2000, np.random.default_rng(0)).cells
    rows, streams = cells // 2, cells % 2
    assert not np.any((rows == 5) & (streams == 1))
    assert rows.max() <= 8 - 1 - 3


def test_one_step_transitions_bootstrap_from_the_next_row_or_the_final_observation():
    shard = _shard(rows=6, n_step=1, gamma=0.5)
    flags = np.full((8, 2), VALID, dtype=np.uint8)
    flags[2, 0] = VALID | TERMINATED | ENDED   # stream 0 terminates at absolute row 2
    flags[3, 1] = VALID | ENDED                # stream 1 is truncated at row 3 ...
    flags[4, 1] = 0                            # ... and row 4 is its reset row
    shard.add(*_chunk(0, 4, 2, flags[:4]))
    shard.add(*_chunk(4, 4, 2, flags[4:]))     # rows 6 and 7 wrap to ring rows 0 and 1
    cells = np.array([2 * 2 + 0, 3 * 2 + 1, 5 * 2 + 0, 5 * 2 + 1, 3 * 2 + 0])
    s = shard._transitions(cells, np.ones(5, np.float32))
    assert s.returns.tolist() == [1, 1, 1, 1, 1]
    assert s.discounts.tolist() == [0, 0.5, 0.5, 0.5, 0.5]  # no bootstrap past a termination
    assert s.next_obs[:, 0].tolist() == [3, 104, 6, 106, 4]  # truncation: the final obs
    # the next observations' cells, for values cached per stored observation
    stored = shard.obs.reshape(shard.capacity, -1)
    assert np.array_equal(stored[s.next_cells], s.next_obs)
    assert s.next_cells.tolist() == [3 * 2 + 0, 4 * 2 + 1, 0 * 2 + 0, 0 * 2 + 1, 4 * 2 + 0]
    n3 = _shard()
    n3.add(*_chunk(0, 8, 2))
    s = n3.sample(50, np.random.default_rng(1))
    assert np.array_equal(n3.obs.reshape(n3.capacity, -1)[s.next_cells], s.next_obs)


def test_ring_wraps_and_windows_continue_across_the_wrap():
    shard = _shard(rows=10, n_step=2, gamma=1.0)
    for t0 in range(0, 24, 4):
        shard.add(*_chunk(t0, 4, 2))
    assert shard.written == 24 and shard.fill() == 1.0
    # the oldest kept row is absolute 14 (ring row 4); absolute 21 (newest sampleable) is
    # ring row 1 and bootstraps from absolute 23 (ring row 3)
    s = shard._transitions(np.array([1 * 2]), np.ones(1, np.float32))
    assert s.obs[0, 0] == 21 and s.next_obs[0, 0] == 23 and s.returns[0] == 2
    rows = shard.sample(5000, np.random.default_rng(3)).obs[:, 0] % 100
    assert rows.min() == 14 and rows.max() == 21


def test_prioritized_sampling_follows_td_errors_and_skips_incomplete_rows():
    shard = _shard(rows=20, streams=1, n_step=1, gamma=0.9, prio=Prioritization(alpha=1.0))
    shard.add(*_chunk(0, 10, 1))
    first, last = shard._ready_rows()
    assert (first, last) == (0, 8)
    cells = np.arange(9)
    td = np.ones(9)
    td[3] = 10.0
    shard.update_priorities(cells, td)
    s = shard.sample(4000, np.random.default_rng(0), beta=1.0)
    assert np.mean(s.cells == 3) == pytest.approx(10 / 18, abs=0.03)
    assert s.cells.max() <= 8  # the newest row waits for its successor
    # rarely drawn cells get the larger importance weights; the largest is 1
    assert s.weights.max() == pytest.approx(1.0)
    assert s.weights[s.cells == 3].max() < s.weights.max()
    # a new chunk makes row 9 sampleable at the largest priority seen
    shard.add(*_chunk(10, 1, 1))
    assert shard.tree.get([9])[0] == pytest.approx(shard.max_priority)


def test_replay_state_round_trip():
    a = _shard(prio=Prioritization())
    for t0 in range(0, 20, 4):
        a.add(*_chunk(t0, 4, 2))
    b = _shard(prio=Prioritization())
    b.load_state_dict(a.state_dict())
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    sa, sb = a.sample(64, rng1), b.sample(64, rng2)
    assert np.array_equal(sa.cells, sb.cells) and np.array_equal(sa.returns, sb.returns)
    with pytest.raises(ValueError, match="12 x 2"):
        _shard(rows=30).load_state_dict(a.state_dict())


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_a_replay_shard_is_resident_from_the_start():
    """Lazily mapped zeros would let a replay too big for the node fail only once it fills,
    hours into a run; the shard's memory is in use as soon as it exists."""
    before = _rss()
    shard = ReplayShard(50_000, 4, (256,), np.float32, (), np.int64, 3, 0.99,
                        Prioritization(alpha=0.6))
    assert shard.nbytes > 200 * 2 ** 20
    assert _rss() - before > 0.9 * shard.nbytes
