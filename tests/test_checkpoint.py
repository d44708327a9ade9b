"""Checkpoint files, env snapshots, resumed configs, signals and fault plans: single process."""
import os
import signal
import time

import numpy as np
import pytest
import torch

from mpirl.acting.envs import EnvVector
from mpirl.comm import GradientAverager
from mpirl.config.fields import ConfigError
from mpirl.config.sources import parse_config, resumed_config
from mpirl.files.checkpoint import (Checkpoint, CheckpointError, CheckpointStore, decode, encode,
                                    from_bytes)
from mpirl.runtime import rng, signals
from mpirl.runtime.faults import Faults, InjectedFault, parse

from helpers import crafted_checkpoint


def _ckpt(steps: int, **shared) -> Checkpoint:
    return Checkpoint({"env_steps": steps}, shared, [{"rank": 0}])


def test_encoding_keeps_values_and_dtypes_exactly():
    gen = np.random.default_rng(7)
    gen.random(3)
    state = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3), "u8": np.array([1, 255], np.uint8),
        "bool": np.array([True, False]), "u64": np.array([2**63 + 5], np.uint64),
        "scalar": np.float32(1.5), "int": np.int64(-3), "tuple": (1, 2.5, None, "x"),
        "nested": [{"a": np.zeros(0)}], "tensor": torch.ones(3, dtype=torch.float64),
        "rng": gen.bit_generator.state, "legacy": np.random.RandomState(0).get_state(),
    }
    back = decode(encode(state))
    for k in ("f32", "u8", "bool", "u64"):
        assert back[k].dtype == state[k].dtype and np.array_equal(back[k], state[k])
    assert type(back["scalar"]) is np.float32 and back["scalar"] == 1.5
    assert type(back["int"]) is np.int64
    assert back["tuple"] == (1, 2.5, None, "x")
    assert torch.equal(back["tensor"], state["tensor"])
    restored = np.random.default_rng()
    restored.bit_generator.state = back["rng"]
    assert restored.random() == gen.random()
    with pytest.raises(TypeError, match="cannot store"):
        encode({"f": lambda: 0})


def test_store_writes_atomically_and_keeps_the_newest(tmp_path):
    store = CheckpointStore(tmp_path / "ck", keep=2)
    for steps in (100, 300, 200):
        path, size = store.write(_ckpt(steps, w=torch.arange(4.0)))
        assert path.stat().st_size == size
    assert [p.name for p in store.paths()] == ["ckpt-000000000300.ckpt",
                                               "ckpt-000000000200.ckpt"]
    assert not list((tmp_path / "ck").glob(".*tmp"))
    ckpt, notes = store.newest_readable()
    assert ckpt.env_steps == 300 and notes == [] and torch.equal(ckpt.shared["w"],
                                                                  torch.arange(4.0))


def test_truncated_or_corrupted_checkpoints_are_named_and_skipped(tmp_path):
    store = CheckpointStore(tmp_path, keep=5)
    for steps in (1, 2, 3):
        store.write(_ckpt(steps, w=torch.zeros(1000)))
    newest, middle = store.paths()[0], store.paths()[1]
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])
    flipped = bytearray(middle.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    middle.write_bytes(bytes(flipped))
    ckpt, notes = store.newest_readable()
    assert ckpt.env_steps == 1
    assert f"{newest} is truncated" in notes[0]
    assert f"{middle} is corrupted (checksum mismatch)" in notes[1]
    for p in store.paths():
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint.*bad header"):
        store.newest_readable()


def test_a_checkpoint_crafted_to_run_code_does_not_run_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt-000000000005.ckpt"
    path.write_bytes(crafted_checkpoint(marker))
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        from_bytes(path.read_bytes(), path)
    assert not marker.exists()


def test_classic_control_envs_continue_exactly_from_a_snapshot():
    for env_id in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1"):
        a = EnvVector(env_id, 3, seed=0, rank=1)
        rng = np.random.default_rng(0)

        def actions():
            if a.spec.discrete:
                return rng.integers(0, a.spec.n_actions, 3)
            return rng.uniform(-2, 2, (3, 1)).astype(np.float32)

        for _ in range(37):
            a.step(actions())
        snap = decode(encode(a.state_dict()))
        b = EnvVector(env_id, 3, seed=0, rank=1)
        assert b.load_state_dict(snap, epoch=1) == 0  # nothing had to restart
        for _ in range(250):
            act = actions()
            for x, y in zip(a.step(act)[:4], b.step(act)[:4]):
                assert np.array_equal(x, y), env_id
        assert a.pop_episodes() == b.pop_episodes()


def test_envs_that_cannot_be_saved_restart_with_fresh_seeds():
    a = EnvVector("envs_for_tests:Corridor", 2, seed=0, rank=0)
    snap = a.state_dict()
    assert snap["envs"] == [None, None]
    b = EnvVector("envs_for_tests:Corridor", 2, seed=0, rank=0)
    assert b.load_state_dict(snap, epoch=1) == 2


def test_a_noise_stream_saved_on_another_device_type_is_reseeded_repeatably():
    """SAC/TD3/D4PG checkpoint their learners' torch noise generator. A CUDA generator's
    state (16 bytes: Philox seed and offset) cannot continue a CPU generator, nor the reverse:
    a run moved to another device (--override device) reseeds from the saved state."""
    g = torch.Generator().manual_seed(7)
    saved = g.get_state()
    same = torch.Generator()
    assert rng.restore_torch_generator(same, saved)
    assert torch.equal(torch.randn(5, generator=same), torch.randn(5, generator=g))
    cuda_like = torch.tensor(list(range(16)), dtype=torch.uint8)
    a, b, c = torch.Generator(), torch.Generator(), torch.Generator()
    assert not rng.restore_torch_generator(a, cuda_like)
    assert not rng.restore_torch_generator(b, cuda_like.clone())
    assert not rng.restore_torch_generator(c, torch.flip(cuda_like, [0]))
    draws = [torch.randn(5, generator=x) for x in (a, b, c)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_resumed_config_refuses_silent_changes():
    saved = parse_config(["--lr", "0.002"]).to_dict()
    with pytest.raises(ConfigError, match=r"--lr 0.01 \(the run has 0.002\).*--override lr"):
        resumed_config(saved, {"lr": 0.01, "resume": "r"})
    cfg = resumed_config(saved, {"lr": 0.01, "resume": "r", "override": ["lr"]})
    assert cfg.lr == 0.01
    # how the run executes may change freely; equal values are not a change
    cfg = resumed_config(saved, {"quiet": True, "learners": 2, "comm_timeout": 60.0,
                                 "precision": "bf16", "lr": 0.002, "resume": "r"})
    assert cfg.quiet and cfg.learners == 2 and cfg.comm_timeout == 60.0
    assert cfg.precision == "bf16"
    with pytest.raises(ConfigError, match="only applies with --resume"):
        parse_config(["--override", "lr"])
    with pytest.raises(ConfigError, match="unknown field.*nope"):
        parse_config(["--resume", "r", "--override", "nope"])
    assert parse_config(["--resume", "r", "--override", "total-steps"]).override == \
        ["total_steps"]


def test_stop_signals_only_set_a_flag():
    old = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.install()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.requested() == signal.SIGUSR1  # the first one is kept
        assert signals.name(signals.requested()) == "SIGUSR1"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        signals._received = 0


def test_fault_plans():
    assert parse("raise@2:5, nan@0:1, slow@3:4") == ({(2, 5): "raise", (0, 1): "nan"},
                                                     {3: 4.0})
    with pytest.raises(ValueError, match="KIND@RANK:UPDATE"):
        parse("boom@1:2")
    with pytest.raises(ValueError, match="FACTOR a number >= 1"):
        parse("slow@1:0.5")
    faults = Faults(rank=2, text="raise@2:5,nan@2:1")
    assert faults.strike(0) is None and faults.strike(1) == "nan"
    with pytest.raises(InjectedFault, match="update 5"):
        faults.strike(5)


def test_a_slow_rank_steps_its_envs_that_many_times_slower():
    """The slowed run's wall time against the time its own env steps took, so that the host's
    speed, which varies from run to run, cancels out."""
    def run(faults):
        envs = EnvVector("CartPole-v1", 4, seed=0, rank=1)
        step, stepping = envs.step, [0.0]

        def timed_step(*args):
            t = time.perf_counter()
            out = step(*args)
            stepping[0] += time.perf_counter() - t
            return out

        envs.step = timed_step
        faults.slow_down(envs)
        t = time.perf_counter()
        for _ in range(3000):
            envs.step(np.zeros(4, dtype=np.int64))
        return (time.perf_counter() - t) / stepping[0]

    assert run(Faults(rank=1, text="slow@2:4")) < 1.5  # another rank's fault
    assert 3.2 < run(Faults(rank=1, text="slow@1:4")) < 5.5


def test_a_nonfinite_loss_or_gradient_is_flagged():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    avg = GradientAverager(model.parameters(), None, extras=("a", "b"))
    x = torch.randn(4, 3)
    avg.extras[:] = [1.0, 2.0]
    avg.zero_grad()
    avg.backward(model(x).pow(2).mean())
    avg.average()
    avg.clip_norm_(0.5)
    assert avg.finite and avg.extras.tolist() == [1.0, 2.0]
    avg.zero_grad()
    avg.backward(model(x).sum() * float("nan"))
    avg.average()
    assert not avg.finite
    avg.zero_grad()
    avg.backward(model(x * 1e30).pow(2).sum())  # overflows to inf
    avg.average()
    avg.clip_norm_(0.5)
    assert not avg.finite
