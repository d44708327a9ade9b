"""A new algorithm is a module of its own plus one registration: ``plugins/reinforce.py``,
written against the plug-in surface alone, is chosen with --algo, has its options in --help
and its checks, trains CartPole-v1 under mpirun, checkpoints and resumes exactly, and is
evaluated by mpirl.evaluate. Plug-ins load from MPIRL_PLUGINS or from an installed package's
entry point; one that cannot load is bad input."""
import json

import pytest

from helpers import (evaluations, learning_rows, run_job, same_weights, summary,
                     whole_and_resumed)

REINFORCE = ["--algo", "reinforce", "--total-steps", "40000", "--eval-every", "10000",
             "--eval-episodes", "5", "--log-every", "5000", "--checkpoint-every", "20",
             "--quiet", "--no-tensorboard"]


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setenv("MPIRL_PLUGINS", "plugins.reinforce")


def test_a_plugin_trains_cartpole_checkpoints_and_resumes_exactly(tmp_path, plugin):
    whole, parts = whole_and_resumed(tmp_path, REINFORCE, 40000, ranks=3)
    assert max(evaluations(whole)) >= 300, evaluations(whole)  # random play lasts ~22 steps
    assert learning_rows(parts) == learning_rows(whole)
    assert same_weights(parts, whole)
    s = summary(parts)
    assert s["resumed"] == 1 and s["learners"] == 1 and s["actors"] == 2
    res = run_job(["mpirl.evaluate", str(whole), "--episodes", "3", "--json"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["return_mean"] >= 100


def test_a_plugin_has_its_options_in_help_and_its_checks(tmp_path, plugin):
    res = run_job(["mpirl.train", "--help"])
    assert res.returncode == 0, res.stderr
    assert "{a2c,ppo,dqn,sac,td3,d4pg,a3c,impala,r2d2,reinforce}" in res.stdout
    assert "REINFORCE (reinforce):" in res.stdout and "--reinforce-baseline" in res.stdout
    for args, needle in [
        (["--algo", "reinforce", "--clip-range", "0.1"],
         "--clip-range is an option of ppo, not of --algo reinforce"),
        (["--algo", "ppo", "--reinforce-entropy", "0.1"],
         "--reinforce-entropy is an option of reinforce, not of --algo ppo"),
        (["--algo", "reinforce", "--reinforce-entropy", "-1"],
         "--reinforce-entropy must be >= 0, got -1.0"),
        (["--algo", "reinforce", "--env", "Pendulum-v1"],
         "--algo reinforce needs a Discrete action space"),
    ]:
        res = run_job(["mpirl.train", *args, "--run-dir", str(tmp_path / "run")], ranks=2,
                      timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count("mpirl: error:") == 1 and needle in res.stderr, res.stderr
        assert not (tmp_path / "run").exists()


def test_a_plugin_that_cannot_load_or_is_not_loaded_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIRL_PLUGINS", "plugins.no_such_module")
    res = run_job(["mpirl.train", "--run-dir", str(tmp_path / "run")], ranks=2, timeout=120)
    assert res.returncode == 2
    assert "MPIRL_PLUGINS names module 'plugins.no_such_module', which cannot be imported" \
        in res.stderr and "Traceback" not in res.stderr
    monkeypatch.delenv("MPIRL_PLUGINS")
    res = run_job(["mpirl.train", "--algo", "reinforce", "--run-dir", str(tmp_path / "run")],
                  ranks=2, timeout=120)
    assert res.returncode == 2 and "invalid choice: 'reinforce'" in res.stderr


def test_an_installed_package_registers_its_algorithm_through_an_entry_point(tmp_path,
                                                                            monkeypatch):
    dist = tmp_path / "site" / "mpirl_reinforce-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mpirl-reinforce\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[mpirl.algorithms]\n"
                                           "reinforce = plugins.reinforce\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.delenv("MPIRL_PLUGINS", raising=False)
    res = run_job(["mpirl.train", "--help"])
    assert res.returncode == 0, res.stderr
    assert "{a2c,ppo,dqn,sac,td3,d4pg,a3c,impala,r2d2,reinforce}" in res.stdout


def test_a_plugin_whose_option_clashes_with_another_is_bad_input(tmp_path, monkeypatch):
    (tmp_path / "clashing.py").write_text(
        "from dataclasses import dataclass\n"
        "from mpirl.algos.api import SYNCHRONOUS, Algorithm, option\n"
        "from mpirl.algos.registry import register\n"
        "from plugins.reinforce import ALGORITHM as R\n"
        "@dataclass\n"
        "class Clash:\n"
        "    '''clash'''\n"
        "    gamma: float = option(0.9, 'Already a general option.')\n"
        "register(Algorithm(name='clash', description='x', execution=SYNCHRONOUS,\n"
        "                   options=(Clash,), policy=R.policy, collector=R.collector,\n"
        "                   message=R.message, trainer=R.trainer))\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("MPIRL_PLUGINS", "clashing")
    res = run_job(["mpirl.train", "--algo", "clash"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--algo clash declares the option 'gamma' (Clash), which GeneralOptions declares " \
        "already" in res.stderr
