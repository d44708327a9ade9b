import numpy as np
import pytest
import torch

from mpirl.acting.envs import EnvVector, describe_env, make_env
from mpirl.acting.messages import PackedArrays, report_fields, rollout_fields
from mpirl.comm.gradsync import FlatParameters, GradientAverager
from mpirl.config.fields import ConfigError
from mpirl.nets.actor_critic import ActorCritic
from mpirl.runtime.rng import env_seed


def test_env_from_class_path():
    env = make_env("envs_for_tests:Corridor")
    assert describe_env(env).n_actions == 2


@pytest.mark.parametrize("env_id,needle", [
    ("NoSuchEnv-v0", "unknown or unusable env"),
    ("no_such_module:Env", "cannot import module"),
    ("envs_for_tests:Nope", "has no attribute"),
])
def test_bad_env_ids(env_id, needle):
    with pytest.raises(ConfigError, match=needle):
        make_env(env_id)


def test_seeds_differ_per_rank_and_env_and_repeat():
    seeds = {env_seed(0, r, i) for r in range(4) for i in range(8)}
    assert len(seeds) == 32 and env_seed(0, 1, 2) == env_seed(0, 1, 2) != env_seed(1, 1, 2)
    a, b = EnvVector("CartPole-v1", 3, 0, rank=0), EnvVector("CartPole-v1", 3, 0, rank=0)
    np.testing.assert_array_equal(a.obs, b.obs)
    assert len({tuple(o) for o in a.obs}) == 3


def test_env_vector_autoreset_and_truncation():
    envs = EnvVector("envs_for_tests:Corridor", 2, 0, rank=0)
    left = np.zeros(2, np.int64)
    for t in range(19):
        _, _, term, trunc, final = envs.step(left)
        assert not trunc.any() and not final
    _, _, term, trunc, final = envs.step(left)  # step 20: time limit
    assert trunc.all() and not term.any() and set(final) == {0, 1}
    assert envs.obs[0, 0] == 0.0  # already reset
    returns, lengths = envs.pop_episodes()
    assert returns == [0.0, 0.0] and lengths == [20, 20]


def test_packed_arrays_views_share_one_buffer():
    from mpirl.acting.envs import EnvSpec
    spec = EnvSpec((2, 3), np.dtype(np.uint8), True, 4, None, None)
    fields = {**rollout_fields(spec, 5, 2), **report_fields()}
    a, b = PackedArrays(fields), PackedArrays(fields)
    a["obs"][:] = 7
    a["actions"][:] = 3
    a["episodes"][:] = (2, 10.5, 40)
    b.buffer[:] = a.buffer  # what an MPI receive does
    assert b["obs"].dtype == np.uint8 and (b["obs"] == 7).all() and (b["actions"] == 3).all()
    assert list(b["episodes"]) == [2, 10.5, 40]


def test_gradients_land_in_the_flat_buffer():
    torch.manual_seed(0)
    env = make_env("CartPole-v1")
    model = ActorCritic(describe_env(env), [8])
    params = FlatParameters(model)
    avg = GradientAverager(model.parameters(), None)
    x = torch.randn(4, 4)
    avg.zero_grad()
    out, v = model(x)
    (out.sum() + v.sum()).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(avg.average(), expected)
    assert float(avg.flat.abs().sum()) > 0
    norm = avg.clip_norm_(1e-3)
    assert norm > 1e-3 and abs(float(avg.flat.norm()) - 1e-3) < 1e-5
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = params.vector.clone()
    opt.step()  # in-place updates keep the parameters inside the flat buffer
    assert not torch.equal(before, params.vector)
    params.load_(before.numpy())
    torch.testing.assert_close(torch.cat([p.reshape(-1) for p in model.parameters()]), before)


def test_optimizer_zero_grad_misuse_is_reported():
    model = ActorCritic(describe_env(make_env("CartPole-v1")), [4])
    avg = GradientAverager(model.parameters(), None, share=0.5)
    model.zero_grad(set_to_none=True)
    with pytest.raises(RuntimeError, match="GradientAverager.zero_grad"):
        avg.average()
