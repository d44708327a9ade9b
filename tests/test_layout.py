import pytest

from mpirl.config.fields import ConfigError
from mpirl.execution.layout import plan_layout


def test_one_rank_acts_and_learns():
    lay = plan_layout(1, 1)
    assert lay.self_acting and lay.role(0) == "learner+actor" and lay.acting_ranks_of(0) == 1


def test_actors_spread_evenly_over_learners():
    lay = plan_layout(7, 2)
    assert [lay.role(r) for r in range(7)] == ["learner"] * 2 + ["actor"] * 5
    assert lay.actors_of(0) == [2, 4, 6] and lay.actors_of(1) == [3, 5]
    assert all(lay.learner_of(a) == 0 for a in lay.actors_of(0))


def test_every_rank_a_learner():
    lay = plan_layout(4, 4)
    assert lay.self_acting and all(lay.is_learner(r) for r in range(4))


@pytest.mark.parametrize("size,learners,needle", [
    (2, 3, "more than the 2 MPI rank"),
    (4, 3, "needs at least one actor"),
    (4, 0, "at least 1"),
])
def test_invalid_layouts(size, learners, needle):
    with pytest.raises(ConfigError, match=needle):
        plan_layout(size, learners)
