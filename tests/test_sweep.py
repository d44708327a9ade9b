"""Sweeps: the spec's combinations and seeds become tasks (one per SLURM array task), each a
training in its own directory; summarize ranks the combinations over their seeds, and mpirl.plot
draws one curve per combination. (The sweep as a SLURM job array: tests/test_slurm.py.)"""
import subprocess

import pytest

from helpers import _job_command
from mpirl.config.fields import ConfigError
from mpirl.plot import group_runs, read_run
from mpirl.sweep import combinations, load_spec, tasks

SPEC = """runs: runs/a2c-sweep
config:
  algo: a2c
  total_steps: 6000
  eval_episodes: 2
  quiet: true
  tensorboard: false
grid:
  lr: [0.002, 0.0005]
  n_steps: [5, 10]
seeds: [0, 1]
"""


def _sweep(tmp_path, *args, ranks=None, env=None):
    cmd, job_env = _job_command(["mpirl.sweep", *args], ranks)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**job_env, **(env or {})})


def test_a_grid_and_a_random_sweep_make_their_tasks(tmp_path):
    (tmp_path / "grid.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "grid.yaml")
    found = tasks(spec)
    assert len(found) == 8
    assert [str(d) for _, _, d in found[:3]] == [
        "runs/a2c-sweep/lr=0.002,n_steps=5/seed-0", "runs/a2c-sweep/lr=0.002,n_steps=5/seed-1",
        "runs/a2c-sweep/lr=0.002,n_steps=10/seed-0"]
    random = {"runs": "r", "random": {"lr": {"loguniform": [1e-4, 1e-2]},
                                      "n_steps": [5, 10, 20], "ent_coef": {"uniform": [0, 0.1]},
                                      "n_epochs": {"int": [2, 6]}}, "trials": 5}
    drawn = combinations(random)
    assert drawn == combinations(random) and len(drawn) == 5  # the same in every task
    assert all(1e-4 <= c["lr"] <= 1e-2 and c["n_steps"] in (5, 10, 20) and
               2 <= c["n_epochs"] <= 6 for c in drawn)
    assert len({c["lr"] for c in drawn}) == 5


@pytest.mark.parametrize("text,message", [
    ("runs: r\n", "either grid:, random: or adaptive:"),
    ("grid: {lr: [1]}\n", "runs:"),
    ("runs: r\ngrid: {lr: [1]}\nbogus: 1\n", "unknown key"),
    ("runs: r\nrandom: {lr: [1]}\n", "trials: N"),
])
def test_a_bad_spec_is_named(tmp_path, text, message):
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        combinations(load_spec(tmp_path / "spec.yaml"))


def test_a_sweep_runs_each_task_and_summarizes_the_combinations(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    res = _sweep(tmp_path, "spec.yaml", "--task", "5", ranks=2)  # one task, as an array task
    assert res.returncode == 0, res.stderr
    runs = tmp_path / "runs" / "a2c-sweep"
    assert [str(p.relative_to(runs)) for p in runs.glob("*/seed-*")] == \
        ["lr=0.0005,n_steps=5/seed-1"]
    res = _sweep(tmp_path, "spec.yaml", ranks=2, env={"SLURM_ARRAY_TASK_ID": "9"})
    assert res.returncode == 2 and "task 9 is not in this sweep: it has 8 tasks" in res.stderr
    res = _sweep(tmp_path, "spec.yaml", ranks=2)  # every task in turn (task 5 is done already)
    assert res.returncode == 0, res.stderr
    res = _sweep(tmp_path, "summarize", str(runs))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    table = [line.split() for line in lines[2:]]
    assert len(table) == 4 and all(row[2] == "2" for row in table)  # 4 combinations, 2 seeds
    means = [float(row[3]) for row in table]
    assert means == sorted(means, reverse=True)
    # mpirl.plot: one curve per combination
    groups = group_runs([read_run(p, "eval") for p in sorted(runs.glob("*/seed-*"))])
    assert len(groups) == 4 and all(len(g) == 2 for g in groups.values())
    assert any("lr=0.0005" in label and "n_steps=10" in label for label in groups)


def test_an_adaptive_sweep_shares_one_optuna_journal_between_its_tasks(tmp_path):
    optuna = pytest.importorskip("optuna")
    from optuna.storages.journal import JournalFileBackend
    (tmp_path / "spec.yaml").write_text(
        "runs: runs/adaptive\nconfig: {algo: a2c, total_steps: 4000, eval_episodes: 2, "
        "quiet: true, tensorboard: false}\nadaptive:\n  lr: {loguniform: [0.0003, 0.003]}\n"
        "  n_steps: [5, 10]\ntrials: 3\nseeds: [4]\n")
    for task in (0, 1, 2):  # three array tasks, one after the other
        res = _sweep(tmp_path, "spec.yaml", "--task", str(task), ranks=2)
        assert res.returncode == 0, res.stderr
    runs = tmp_path / "runs" / "adaptive"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(runs / "optuna.journal")))
    study = optuna.load_study(study_name="adaptive", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and all(0.0003 <= t.params["lr"] <= 0.003 for t in done)
    dirs = sorted(p.parent.name for p in runs.glob("trial-*/seed-4"))
    assert [d.split(",")[0] for d in dirs] == ["trial-0", "trial-1", "trial-2"]
    # each trial's value is its run's final evaluation
    import json
    for t in done:
        [run] = runs.glob(f"trial-{t.number},*/seed-4")
        assert t.value == json.loads((run / "summary.json").read_text())["final_eval_return"]
    # a requeued task continues its own trial
    res = _sweep(tmp_path, "spec.yaml", "--task", "1", ranks=2)
    assert res.returncode == 0, res.stderr
    assert len(optuna.load_study(study_name="adaptive", storage=storage).trials) == 3
    res = _sweep(tmp_path, "summarize", str(runs))
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 5, res.stdout
