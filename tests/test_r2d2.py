"""R2D2's parts against reference computations: the value rescaling round-trips, n-step
targets over stored sequences equal a plain per-step loop, the learner's unroll from stored
states gives the actor's Q-values, and the sequence replay draws only whole, current
sequences."""
import numpy as np
import pytest
import torch

from mpirl.acting.envs import EnvVector
from mpirl.acting.messages import PackedArrays, report_fields
from mpirl.acting.partial import NO_VELOCITY_ID
from mpirl.algos.r2d2.collect import SequenceCollector, sequence_fields
from mpirl.algos.r2d2.loss import nstep_returns, rescale, sequence_priorities, unrescale
from mpirl.algos.r2d2.network import RecurrentQNetwork
from mpirl.config.fields import ConfigError
from mpirl.config.sources import parse_config
from mpirl.replay import ENDED, TERMINATED, VALID
from mpirl.replay.sequences import FIELDS, SequenceReplay


def test_the_value_rescaling_and_its_inverse_round_trip():
    x = torch.cat([torch.linspace(-1e4, 1e4, 20001, dtype=torch.float64),
                   torch.tensor([0.0, 1e-6, -1e-6, 1e5, -1e5], dtype=torch.float64)])
    torch.testing.assert_close(unrescale(rescale(x)), x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(rescale(unrescale(x[:1000] / 100)), x[:1000] / 100)
    assert float(rescale(torch.tensor(3.0))) == pytest.approx(1.0 + 0.003)  # sqrt(4) - 1
    assert float(rescale(torch.tensor(-8.0))) == pytest.approx(-2.0 - 0.008)


def _reference_nstep(rewards, flags, gamma, n):
    """One step at a time, as the definitions read."""
    B, L = rewards.shape
    out = np.zeros((3, B, L - n))
    for b in range(B):
        for t in range(L - n):
            ret, boot, index = 0.0, gamma ** n, t + n
            for k in range(n):
                ret += gamma ** k * rewards[b, t + k]
                f = flags[b, t + k]
                if f & ENDED:
                    boot = 0.0 if f & TERMINATED else gamma ** (k + 1)
                    index = t + k + 1
                    break
            out[:, b, t] = ret, boot, index
    return out


def _episode_flags(rng, B, L):
    """Streams of episodes: terminations, and time-limit cut-offs followed by their final
    observation's step (no transition)."""
    flags = np.zeros((B, L), np.uint8)
    for b in range(B):
        t = 0
        while t < L:
            r = rng.random()
            if r < 0.1:
                flags[b, t] = VALID | TERMINATED | ENDED
            elif r < 0.2 and t + 1 < L:
                flags[b, t] = VALID | ENDED
                t += 1  # the final-observation step
            else:
                flags[b, t] = VALID
            t += 1
    return flags


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_targets_over_sequences_equal_a_per_step_loop(n):
    rng = np.random.default_rng(n)
    B, L, gamma = 16, 30, 0.97
    rewards = rng.standard_normal((B, L)).astype(np.float32)
    flags = _episode_flags(rng, B, L)
    ret, boot, index = nstep_returns(torch.from_numpy(rewards), torch.from_numpy(flags), gamma, n)
    want = _reference_nstep(rewards, flags, gamma, n)
    np.testing.assert_allclose(ret.numpy(), want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(boot.numpy(), want[1], rtol=1e-6)
    boots = want[1] > 0  # where nothing bootstraps, the index does not matter
    np.testing.assert_array_equal(index.numpy()[boots], want[2][boots])
    assert (~boots).any()  # terminations inside windows
    if n > 1:  # and cut-offs that bootstrap early
        assert (want[2][boots] != (np.arange(L - n) + n)[None].repeat(B, 0)[boots]).any()


def test_sequence_priorities_mix_the_max_and_the_mean_of_the_masked_errors():
    td = torch.tensor([[1.0, -3.0, 2.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert float(sequence_priorities(td, mask, 0.9)) == pytest.approx(0.9 * 3 + 0.1 * 2)


def _collect(model, chunks: int, n_envs: int = 4, n_steps: int = 10, epsilon: float = 0.5):
    envs = EnvVector(NO_VELOCITY_ID, n_envs, 0, rank=0)
    collector = SequenceCollector(model, envs, n_steps, np.random.default_rng(0),
                                  lambda progress: epsilon)
    message = PackedArrays({**sequence_fields(envs.spec, n_steps, n_envs, model.lstm_size),
                            **report_fields()})
    out = []
    for _ in range(chunks):
        collector.collect(message, 0.0)
        out.append({k: message[k].copy() for k in FIELDS})
    return out


def test_the_learners_unroll_from_stored_states_gives_the_actors_q_values():
    """Burn-in 0: from the state stored with a sequence's first step, the learner's Q-values
    over the sequence (episode starts inside it included) are the actor's, at every step."""
    spec = EnvVector(NO_VELOCITY_ID, 1, 0, 0).spec
    torch.manual_seed(0)
    model = RecurrentQNetwork(spec, [32], "relu", lstm_size=16, dueling=True)
    chunks = _collect(model, 12)
    replay = SequenceReplay(120, 4, spec.obs_shape, spec.obs_dtype, 16, length=12, stride=6,
                            extra=3, initial_priority=lambda seq: np.ones(len(seq["rewards"])))
    for chunk in chunks:
        replay.add(chunk)
    sample = replay.sample(32, np.random.default_rng(1), beta=1.0)
    seq = sample.sequences
    assert seq["firsts"][:, 1:].sum() > 0  # episodes start inside some sequences
    with torch.no_grad():
        q, _ = model.unroll(torch.from_numpy(seq["obs"]).transpose(0, 1),
                            torch.from_numpy(seq["state"]).transpose(0, 1).contiguous(),
                            torch.from_numpy(seq["firsts"]).transpose(0, 1))
    q = q.transpose(0, 1).numpy()
    taken = np.take_along_axis(q, seq["actions"][..., None], -1)[..., 0]
    np.testing.assert_allclose(taken, seq["q_taken"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q.max(-1), seq["q_max"], rtol=1e-4, atol=1e-5)
    # starting every sequence from the zero state instead gives other values
    with torch.no_grad():
        q0, _ = model.unroll(torch.from_numpy(seq["obs"]).transpose(0, 1), torch.zeros(2, 32, 16),
                             torch.from_numpy(seq["firsts"]).transpose(0, 1))
    assert not np.allclose(q0.transpose(0, 1).numpy().max(-1), seq["q_max"], atol=1e-3)


def test_the_sequence_replay_draws_whole_current_sequences_only():
    """Steps numbered in their observations: a drawn sequence is consecutive steps of one
    stream, starting at a stride, fully written, and not yet overwritten."""
    rows, streams, length, stride, extra, T = 40, 3, 8, 4, 2, 5
    replay = SequenceReplay(rows, streams, (1,), np.float32, 2, length, stride, extra,
                            initial_priority=lambda seq: np.ones(len(seq["rewards"])),
                            alpha=0.6)
    rng = np.random.default_rng(0)
    written = 0
    for _ in range(30):
        chunk = {name: np.zeros((T, streams) + shape, dtype) for name, shape, dtype in [
            ("obs", (1,), np.float32), ("actions", (), np.int64), ("rewards", (), np.float32),
            ("flags", (), np.uint8), ("firsts", (), np.uint8), ("states", (2, 2), np.float32),
            ("q_taken", (), np.float32), ("q_max", (), np.float32)]}
        chunk["obs"][..., 0] = (written + np.arange(T))[:, None] * 10 + np.arange(streams)
        replay.add(chunk)
        written += T
        if written < length + extra:
            assert not replay.can_sample()
            continue
        sample = replay.sample(16, rng, beta=0.5)
        obs = sample.sequences["obs"][..., 0]
        step, stream = obs // 10, obs % 10
        assert (np.diff(step, axis=1) == 1).all()
        assert (stream == stream[:, :1]).all()
        assert (step[:, 0] % stride == 0).all()
        assert (step[:, -1] < written).all() and (step[:, 0] >= written - rows).all()
        assert sample.weights is not None and sample.weights.max() == pytest.approx(1.0)


def test_r2d2_settings_are_checked():
    with pytest.raises(ConfigError, match="--burn-in 20 must leave steps"):
        parse_config(["--algo", "r2d2", "--burn-in", "20", "--seq-len", "20"])
    with pytest.raises(ConfigError, match="--seq-overlap 20 must be less"):
        parse_config(["--algo", "r2d2", "--seq-overlap", "20"])
    with pytest.raises(ConfigError, match="r2d2 is recurrent"):
        parse_config(["--algo", "r2d2", "--recurrent", "none"])
