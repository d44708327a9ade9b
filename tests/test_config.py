import pytest

from mpirl.config.fields import ConfigError
from mpirl.config.schema import Config
from mpirl.config.sources import config_from_dict, parse_config


def test_defaults_and_flags():
    cfg = parse_config(["--env", "Acrobot-v1", "--seed", "3", "--target-return", "-100",
                        "--hidden-sizes", "32", "32", "--no-tensorboard"])
    assert (cfg.algo, cfg.env, cfg.seed, cfg.target_return) == ("a2c", "Acrobot-v1", 3, -100.0)
    assert cfg.hidden_sizes == [32, 32] and cfg.tensorboard is False
    assert parse_config([]).target_return is None


def test_required_flag_names_exist():
    cfg = parse_config(["--algo", "a2c", "--env", "CartPole-v1", "--seed", "1",
                        "--total-steps", "1000", "--target-return", "475",
                        "--eval-episodes", "5", "--run-dir", "x", "--learners", "2",
                        "--envs-per-actor", "4"])
    assert (cfg.total_steps, cfg.eval_episodes, cfg.learners, cfg.envs_per_actor) == \
        (1000, 5, 2, 4)


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "lr: 0.001\nenvs-per-actor: 8\nhidden_sizes: [32]\n"),
    (".toml", "lr = 0.001\nenvs_per_actor = 8\nhidden_sizes = [32]\n"),
])
def test_config_file_then_flags_override(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = parse_config(["--config", str(path), "--envs-per-actor", "2"])
    assert cfg.lr == 0.001 and cfg.hidden_sizes == [32] and cfg.envs_per_actor == 2


@pytest.mark.parametrize("text,needle", [
    ("bogus: 1\n", "unknown key 'bogus'"),
    ("seed: 1.5\n", "config key 'seed'"),
    ("tensorboard: 3\n", "config key 'tensorboard'"),
    ("- a\n- b\n", "mapping"),
    ("algo: sarsa\n", "--algo must be one of"),
    ("lr: .nan\n", "--lr must be a finite number, got nan"),
    ("gamma: .inf\n", "--gamma must be a finite number, got inf"),
    ("total_steps: 100000000000000000000000\n", "--total-steps is too large"),
])
def test_bad_config_file(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        parse_config(["--config", str(path)])


@pytest.mark.parametrize("argv,needle", [
    (["--total-steps", "-5"], "--total-steps must be positive"),
    (["--gamma", "1.5"], "--gamma"),
    (["--algo", "nope"], "invalid choice"),
    (["--learners", "0"], "--learners must be positive"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--config", "/does/not/exist.yaml"], "config file not found"),
])
def test_bad_flags(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config(argv)


def test_layout_checked_against_world_size():
    with pytest.raises(ConfigError, match="more than the 2 MPI rank"):
        Config(learners=3).validate(world_size=2)
    Config(learners=2).validate(world_size=2)


def test_round_trip_through_saved_dict():
    cfg = parse_config(["--lr", "0.01", "--hidden-sizes", "8"])
    assert config_from_dict(cfg.to_dict()) == Config(**{**cfg.to_dict(), "config": None})


def test_presets_ship_with_the_package_and_resolve_from_any_directory(tmp_path, monkeypatch):
    from mpirl.config.sources import PRESETS
    monkeypatch.chdir(tmp_path)
    names = sorted(p.name for p in PRESETS.glob("*.yaml"))
    assert {"ppo-cartpole.yaml", "ppo-pendulum.yaml", "ppo-atari.yaml",
            "ppo-halfcheetah.yaml", "impala-atari.yaml", "sac-pendulum.yaml",
            "td3-pendulum.yaml", "d4pg-pendulum.yaml", "sac-halfcheetah.yaml",
            "sac-hopper.yaml"} <= set(names)
    for name in names:  # every preset is a valid config, for the algorithm it is named after
        cfg = parse_config(["--config", f"presets/{name}"])
        assert cfg.algo == name.split("-")[0]
    cfg = parse_config(["--config", "ppo-pendulum", "--seed", "3"])
    assert (cfg.env, cfg.gamma, cfg.normalize_reward, cfg.seed) == ("Pendulum-v1", 0.9, True, 3)
    # PPO's defaults are the CartPole preset
    assert parse_config(["--algo", "ppo"]).to_dict() == \
        parse_config(["--config", "presets/ppo-cartpole.yaml"]).to_dict()
    # a file of that name in the working directory comes first
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "ppo-pendulum.yaml").write_text("algo: a2c\n")
    assert parse_config(["--config", "presets/ppo-pendulum.yaml"]).algo == "a2c"


@pytest.mark.parametrize("argv,needle", [
    (["--algo", "dqn", "--clip-range", "0.1"],
     "--clip-range is an option of ppo, not of --algo dqn"),
    (["--algo", "a3c", "--learners", "2"],
     "--learners is an option of a2c, ppo, dqn, sac, td3, d4pg, impala and r2d2, not of "
     "--algo a3c"),
    (["--servers", "2"], "--servers is an option of a3c, not of --algo a2c"),
    (["--algo", "a2c", "--batch-size", "64"],
     "--batch-size is an option of ppo, dqn, sac, td3, d4pg and r2d2, not of --algo a2c"),
])
def test_an_option_the_chosen_algorithm_does_not_read_is_refused(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config(argv)


def test_a_config_file_key_of_another_algorithm_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("algo: dqn\nreplay_size: 5000\n")
    assert parse_config(["--config", str(path)]).replay_size == 5000
    with pytest.raises(ConfigError, match=f"key 'replay_size' in config file {path} is an "
                                          "option of dqn, sac, td3, d4pg and r2d2, not of "
                                          "--algo ppo"):
        parse_config(["--config", str(path), "--algo", "ppo"])


def test_resuming_with_an_option_of_another_algorithm_is_refused():
    from mpirl.config.sources import resumed_config
    saved = parse_config(["--algo", "dqn"]).to_dict()
    with pytest.raises(ConfigError, match="--clip-range is an option of ppo, not of --algo dqn"):
        resumed_config(saved, {"resume": "r", "clip_range": 0.2, "override": ["clip_range"]})


def test_options_are_grouped_by_the_algorithms_that_read_them_in_help():
    from mpirl.config.sources import build_parser
    text = build_parser().format_help()
    assert "general options (every algorithm):" in text
    sections = {title.split(" (")[0]: title for title in text.splitlines()
                if title.endswith("):") and not title.startswith(" ")}
    assert sections["PPO"] == "PPO (ppo):" and sections["DQN"] == "DQN (dqn, r2d2):"
    assert sections["minibatches"] == "minibatches (ppo, dqn, sac, td3, d4pg, r2d2):"
    assert sections["distributed replay"] == "distributed replay (dqn, sac, td3, d4pg, r2d2):"
    assert sections["learners and actors"].endswith(
        "(a2c, ppo, dqn, sac, td3, d4pg, impala, r2d2):")
    assert sections["entropy"] == "entropy (a2c, ppo, sac, a3c, impala):"
    assert sections["asynchronous actors"] == "asynchronous actors (impala):"
    assert sections["learner synchronization"].endswith("(a2c, ppo, dqn, sac, td3, d4pg, "
                                                        "impala, r2d2):")
    assert sections["slow actors"] == "slow actors (a2c, ppo, dqn, sac, td3, d4pg, r2d2):"
    ppo = text[text.index("PPO (ppo):"):text.index("minibatches (ppo, dqn, sac, td3, d4pg, r2d2):")]
    assert "--clip-range" in ppo and "--replay-size" not in ppo


def _numeric_fields():
    from mpirl.algos import registry
    from mpirl.config.schema import fields_of, schema
    for algo in registry.BUILTIN:
        for name in sorted(fields_of(algo)):
            info = schema()[name]
            if info.numeric:
                yield algo, info


def test_every_numeric_option_declares_its_interval():
    missing = sorted({info.name for _, info in _numeric_fields() if info.bounds is None})
    assert not missing, f"numeric options without bounds: {missing}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_numeric_flag_refuses_non_finite_values(value):
    """NaN fails every comparison, so range checks alone let it through; every float option is
    checked for finiteness in one place (an int option refuses the text outright)."""
    from mpirl.config.fields import cli_flag
    for algo, info in _numeric_fields():
        flag = f"--{cli_flag(info.name)}"
        with pytest.raises(ConfigError) as e:
            parse_config(["--algo", algo, f"{flag}={value}"])
        expected = "must be a finite number" if info.type.startswith("float") else "invalid int"
        assert flag in str(e.value) and expected in str(e.value), (algo, str(e.value))


def test_every_numeric_flag_refuses_a_value_just_outside_its_interval():
    from mpirl.config.fields import cli_flag
    for algo, info in _numeric_fields():
        interval, flag = info.bounds, f"--{cli_flag(info.name)}"
        if interval is None:
            continue
        integer = info.type.startswith("int")
        step = 1 if integer else 1e-3
        kind = int if integer else float
        if interval.low != -float("inf"):
            below = kind(interval.low - (step if interval.low_closed else 0))
            with pytest.raises(ConfigError, match=f"{flag} must be"):
                parse_config(["--algo", algo, f"{flag}={below}"])
        if interval.high != float("inf"):
            above = kind(interval.high + (step if interval.high_closed else 0))
            with pytest.raises(ConfigError, match=f"{flag} must be"):
                parse_config(["--algo", algo, f"{flag}={above}"])


def test_torch_threads_beyond_the_node_is_refused():
    import os
    with pytest.raises(ConfigError, match=f"more than this node's {os.cpu_count()} cores"):
        parse_config(["--torch-threads", "100000"])


def test_a_binary_config_file_is_bad_input(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="cannot read config file .*weights.yaml: not a text"):
        parse_config(["--config", str(path)])


def test_version_flag(capsys):
    import mpirl
    with pytest.raises(SystemExit) as e:
        parse_config(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mpirl {mpirl.__version__}"
