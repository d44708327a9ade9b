"""--env-kwargs and --env-wrapper: the env's constructor gets the arguments and the user's
wrapper gets every env, for registered ids and 'package.module:Class' alike; bad values are
refused at start-up with a message that names them."""
import csv

import numpy as np
import pytest

from helpers import run_job
from mpirl.acting.envs import EnvRef, EnvVector, env_ref, make_env
from mpirl.config.fields import ConfigError
from mpirl.config.sources import parse_config


def test_keyword_arguments_reach_the_constructor_of_registered_and_own_envs():
    assert make_env(EnvRef("Pendulum-v1", {"g": 2.0})).unwrapped.g == 2.0
    assert make_env(EnvRef("envs_for_tests:Corridor", {"length": 7})).length == 7
    cfg = parse_config(["--env", "Pendulum-v1", "--env-kwargs", '{"g": 3.5}'])
    cfg.validate()
    envs = EnvVector(env_ref(cfg), 2, seed=0, rank=0)
    assert [e.unwrapped.g for e in envs.envs] == [3.5, 3.5]


def test_the_wrapper_gets_every_env():
    envs = EnvVector(EnvRef("CartPole-v1", wrapper="envs_for_tests:short_episodes"), 2, 0, 0)
    for t in range(100):  # pushing left and right in turn keeps the pole up past 20 steps
        _, _, terminated, truncated, _ = envs.step(np.full(2, t % 2, dtype=np.int64))
        assert not terminated.any()
    _, lengths = envs.pop_episodes()
    assert lengths == [20] * 10


@pytest.mark.parametrize("ref,message", [
    (EnvRef("Pendulum-v1", {"gravity": 2.0}), "cannot be made with --env-kwargs"),
    (EnvRef("envs_for_tests:Corridor", {"width": 3}), "unexpected keyword argument 'width'"),
    (EnvRef("CartPole-v1", wrapper="no_such_module:wrap"), "cannot import module"),
    (EnvRef("CartPole-v1", wrapper="envs_for_tests:nope"), "has no function 'nope'"),
    (EnvRef("CartPole-v1", wrapper="envs_for_tests:not_a_wrapper"), "did not return a gymnasium"),
])
def test_bad_arguments_and_wrappers_are_named(ref, message):
    with pytest.raises(ConfigError, match=message):
        make_env(ref)


@pytest.mark.parametrize("args,message", [
    (["--env-kwargs", "{g: 2}"], "not valid JSON"),
    (["--env-kwargs", "[1, 2]"], "must be a JSON object"),
    (["--env-wrapper", "envs_for_tests.short_episodes"], "'package.module:function'"),
])
def test_bad_option_values_are_refused(args, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(args).validate()


def test_a_config_file_gives_the_arguments_as_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("env: envs_for_tests:Corridor\nalgo: ppo\nenv_kwargs:\n  length: 9\n")
    cfg = parse_config(["--config", str(path)])
    cfg.validate()
    assert make_env(env_ref(cfg)).length == 9


def test_a_run_trains_and_evaluates_on_the_wrapped_env(tmp_path):
    res = run_job(["mpirl.train", "--env-wrapper", "envs_for_tests:short_episodes",
                   "--total-steps", "4000", "--quiet", "--no-tensorboard",
                   "--run-dir", str(tmp_path)], ranks=2)
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    lengths = [float(r["episode_length_mean"]) for r in rows if r["episode_length_mean"]]
    assert lengths and max(lengths) <= 20
    evals = [float(r["eval_return_mean"]) for r in rows if r["eval_return_mean"]]
    assert evals and max(evals) <= 20  # CartPole pays 1 a step: evaluation is wrapped too


def test_bad_arguments_stop_the_job_at_start_up_on_every_rank(tmp_path):
    res = run_job(["mpirl.train", "--env-kwargs", '{"gravity": 2}', "--run-dir",
                   str(tmp_path / "run")], ranks=2, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "cannot be made with --env-kwargs {'gravity': 2}" in res.stderr
    assert "Traceback" not in res.stderr
