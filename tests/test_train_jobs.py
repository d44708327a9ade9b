"""Whole training jobs, launched as subprocesses (under mpirun where it matters) with timeouts:
a hang fails the test instead of blocking the suite."""
import csv
import json
import time

import pytest
import torch

from mpirl.acting.envs import describe_env, make_env
from mpirl.acting.evaluation import evaluate_policy
from mpirl.files.rundir import RunDir

from helpers import progress_rows, run_job

LEARNING_COLUMNS = ["env_steps", "episodes", "episode_return_mean", "episode_length_mean",
                    "loss", "policy_loss", "value_loss", "entropy", "grad_norm", "eval_return_mean"]
SUMMARY_KEYS = {"final_eval_return", "env_steps", "wall_time_s", "target_return",
                "target_reached", "target_reached_env_steps", "target_reached_time_s"}


def test_single_process_run_leaves_a_complete_run_dir(tmp_path):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--total-steps", "4000", "--eval-every", "2000",
                   "--log-every", "1000", "--eval-episodes", "3", "--target-return", "1e9",
                   "--run-dir", str(run)])
    assert res.returncode == 0, res.stderr
    assert "steps" in res.stdout and "sps" in res.stdout
    assert "train return" in res.stdout and "eval return" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == f"run directory: {run}"
    assert {"config.yaml", "progress.csv", "policy.pt", "summary.json", "tb"} <= \
        {p.name for p in run.iterdir()}
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = progress_rows(run)
    assert set(LEARNING_COLUMNS + ["time_s", "sps"]) <= set(rows[0])
    assert int(rows[-1]["env_steps"]) >= 4000
    assert any(r["eval_return_mean"] for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["target_reached"] is False and summary["target_reached_env_steps"] is None
    assert summary["target_return"] == 1e9

    res = run_job(["mpirl.evaluate", str(run), "--episodes", "2", "--json"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["episodes"] == 2


def test_a_reached_target_says_one_evaluation_can_be_lucky(tmp_path):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--total-steps", "2000", "--eval-every", "1000",
                   "--eval-episodes", "2", "--target-return", "-1000", "--no-tensorboard",
                   "--run-dir", str(run)])
    assert res.returncode == 0, res.stderr
    done = next(line for line in res.stdout.splitlines() if line.startswith("done:"))
    assert "target -1000 reached at" in done and "by one evaluation of 2 episodes" in done
    assert f"python -m mpirl.evaluate {run} --episodes 100" in done


def test_evaluate_rejects_a_directory_without_a_run(tmp_path):
    res = run_job(["mpirl.evaluate", str(tmp_path)])
    assert res.returncode == 2 and "not an mpirl run directory" in res.stderr


def test_same_seed_same_layout_repeats_exactly(tmp_path):
    def learning(run):
        return [[r[c] for c in LEARNING_COLUMNS] for r in progress_rows(run)]

    runs = []
    for name, seed in [("a", "5"), ("b", "5"), ("c", "6")]:
        run = tmp_path / name
        res = run_job(["mpirl.train", "--seed", seed, "--total-steps", "12000",
                       "--log-every", "2000", "--eval-every", "6000", "--eval-episodes", "2",
                       "--envs-per-actor", "4", "--run-dir", str(run), "--quiet"], ranks=3)
        assert res.returncode == 0, res.stderr
        runs.append(learning(run))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_several_learners_with_actors(tmp_path):
    # evaluations and log rows fall on different iterations: all learners must still agree
    # on which collectives to enter
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--learners", "2", "--total-steps", "6000",
                   "--envs-per-actor", "4", "--eval-every", "1100", "--log-every", "700",
                   "--eval-episodes", "2", "--run-dir", str(run)], ranks=5, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 learner(s), 3 actor(s)" in res.stdout
    assert json.loads((run / "summary.json").read_text())["env_steps"] >= 6000
    assert sum(1 for r in progress_rows(run) if r["eval_return_mean"]) >= 5
    # the other ranks stay quiet: one start line, one done line
    assert res.stdout.count("mpirl: a2c on") == 1 and res.stdout.count("done:") == 1


@pytest.mark.parametrize("args,needle", [
    (["--env", "NoSuchEnv-v0"], "unknown or unusable env 'NoSuchEnv-v0'"),
    (["--algo", "nope"], "invalid choice: 'nope'"),
    (["--learners", "9"], "--learners 9 is more than the 4 MPI rank(s)"),
    (["--total-steps", "-1"], "--total-steps must be positive"),
    (["--config", "BAD_CONFIG"], "unknown key 'not_a_field'"),
    (["--algo", "dqn", "--replay-size", "32", "--batch-size", "64"],
     "--replay-size 32 is smaller than --batch-size 64"),
    (["--algo", "dqn", "--env", "Pendulum-v1"],
     "--algo dqn needs a Discrete action space, and env 'Pendulum-v1' has continuous"),
    (["--algo", "dqn", "--replay-size", "200", "--batch-size", "32"],
     "leaves 16 steps per stream; each needs at least"),
    (["--algo", "dqn", "--replay-size", "100000000000"],
     "--replay-size 100,000,000,000 needs 2700.84 GiB per learner's replay shard, and this "
     "node has"),
    (["--algo", "ppo", "--batch-size", "1000"],
     "--batch-size 1000 is larger than the rollout batch: --n-steps 32 x --envs-per-actor 8 "
     "x 3 acting rank(s) = 768"),
    (["--config", "presets/no-such-preset.yaml"],
     "presets shipped with mpirl: d4pg-pendulum.yaml, impala-atari.yaml, ppo-atari.yaml"),
    (["--algo", "ppo", "--precision", "bf16"],
     "--precision bf16 applies to the CNN policy of a2c and ppo on image observations"),
    (["--algo", "dqn", "--clip-range", "0.1"],
     "--clip-range is an option of ppo, not of --algo dqn"),
    (["--auto-resume", "--algo", "dqn", "--clip-range", "0.1"],  # nothing to resume: a new run
     "--clip-range is an option of ppo, not of --algo dqn"),
])
def test_bad_input_exits_2_on_every_rank_with_one_message(tmp_path, args, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.001\nnot_a_field: 1\n")
    args = [str(bad) if a == "BAD_CONFIG" else a for a in args]
    run = tmp_path / "run"
    res = run_job(["mpirl.train", *args, "--run-dir", str(run)], ranks=4, timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.count("mpirl: error:") == 1 and needle in res.stderr
    assert not run.exists()  # nothing started


@pytest.mark.parametrize("crash_rank,role", [(2, "actor"), (0, "learner+actor")])
def test_a_failing_rank_ends_the_whole_job(tmp_path, monkeypatch, crash_rank, role):
    monkeypatch.setenv("MPIRL_TEST_CRASH_RANK", str(crash_rank))
    ranks, extra = (3, []) if role == "actor" else (2, ["--learners", "2"])
    start = time.monotonic()
    res = run_job(["mpirl.train", "--env", "envs_for_tests:CrashingCartPole",
                   "--envs-per-actor", "1", "--total-steps", "100000", *extra,
                   "--run-dir", str(tmp_path / "run")], ranks=ranks, timeout=120)
    assert res.returncode != 0
    assert f"rank {crash_rank} ({role}) failed: RuntimeError: injected failure" in res.stderr
    assert time.monotonic() - start < 60


def test_sixteen_ranks_on_a_small_machine(tmp_path):
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--total-steps", "30000", "--learners", "2",
                   "--run-dir", str(run), "--quiet", "--no-tensorboard"], ranks=16, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 16 and summary["actors"] == 14


def test_dqn_with_sixteen_ranks_and_two_learners_keeps_its_memory_bounded(tmp_path):
    """14 actors feed 2 learners' replay shards on a 2-core machine; the replay is allocated
    up front, so each learner's memory is known before it trains."""
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "dqn", "--total-steps", "15000", "--learners", "2",
                   "--prioritized", "--dueling", "--eval-episodes", "3", "--run-dir", str(run),
                   "--no-tensorboard", "--quiet"], ranks=16, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 16 and summary["actors"] == 14
    # the configured replay ratio is held with 14 actors: 32 samples per env step
    assert summary["updates"] * summary["batch_size"] == pytest.approx(
        32 * (summary["env_steps"] - 1000), rel=0.05)
    assert summary["replay_bytes_per_learner"] < 6 * 2 ** 20
    rows = list(csv.DictReader(open(run / "progress.csv")))
    assert float(rows[-1]["replay_ratio"]) == pytest.approx(32, rel=0.05)


def test_continuous_actions_train_and_evaluate(tmp_path):
    """A Gaussian policy on a Box action space trains (its learned log-std moves), its
    episodes end at Pendulum's time limit, and mpirl.evaluate plays the saved policy: the same
    returns as the trained weights give, not those of the initial ones."""
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--env", "Pendulum-v1", "--total-steps", "4000",
                   "--envs-per-actor", "4", "--eval-episodes", "2", "--run-dir", str(run),
                   "--quiet", "--no-tensorboard"], ranks=2, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [r for r in progress_rows(run) if r["episodes"] != "0"]
    assert rows and all(float(r["episode_length_mean"]) == 200 for r in rows)
    res = run_job(["mpirl.evaluate", str(run), "--episodes", "2", "--json"])
    assert res.returncode == 0, res.stderr
    evaluated = json.loads(res.stdout)["returns"]
    cfg = RunDir(run).load_config()
    spec = describe_env(make_env(cfg.env))
    trained = cfg.algorithm.policy(cfg, spec)
    trained.load_state_dict(torch.load(run / "policy.pt", weights_only=True))
    torch.manual_seed(cfg.seed)
    initial = cfg.algorithm.policy(cfg, spec)
    assert float(trained.log_std.detach().abs().max()) > 0
    assert float(initial.log_std.detach().abs().max()) == 0
    assert evaluate_policy(trained, cfg.env, 2, seed=12345) == evaluated
    assert evaluate_policy(initial, cfg.env, 2, seed=12345) != evaluated


@pytest.mark.parametrize("algo", ["a2c", "ppo", "dqn", "a3c", "impala"])
def test_target_return_stops_the_run_at_the_first_evaluation_that_reaches_it(tmp_path, algo):
    # a random CartPole policy lasts ~20 steps, so the first evaluation reaches 15
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", algo, "--total-steps", "100000", "--eval-every",
                   "2000", "--eval-episodes", "3", "--envs-per-actor", "4", "--target-return",
                   "15", "--run-dir", str(run), "--quiet", "--no-tensorboard"], ranks=3,
                  timeout=120)
    assert res.returncode == 0, res.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["target_reached"] and s["target_reached_env_steps"] <= 6000, s
    assert s["env_steps"] < 10000


def test_the_lead_memory_does_not_grow_with_the_number_of_evaluations(tmp_path):
    """Each evaluation makes and closes --eval-episodes envs. Envs that hold reference cycles
    (Box2D's do) are freed only by the cyclic garbage collector, which in a process holding
    torch (and TensorBoard) runs rarely: the lead's memory grew with every evaluation."""
    peaks = {}
    for evaluations in (4, 40):
        run = tmp_path / str(evaluations)
        res = run_job(["mpirl.train", "--env", "envs_for_tests:Hoarder", "--total-steps",
                       str(800 * evaluations), "--eval-every", "800", "--eval-episodes", "8",
                       "--envs-per-actor", "2", "--n-steps", "8", "--quiet",
                       "--run-dir", str(run)], ranks=2)
        assert res.returncode == 0, res.stderr
        peaks[evaluations] = json.loads((run / "summary.json").read_text())["lead_peak_rss_mb"]
    # 36 more evaluations of 8 envs of 4 MB: 1.1 GB more if closed envs were kept
    assert peaks[40] < peaks[4] + 100, peaks


def test_dqn_checkpoint_every_counts_gradient_updates(tmp_path):
    """As --target-update and --weights-every do: a DQN iteration makes several updates."""
    from mpirl.files.checkpoint import CheckpointStore
    run = tmp_path / "run"
    res = run_job(["mpirl.train", "--algo", "dqn", "--total-steps", "6000", "--learning-starts",
                   "500", "--replay-ratio", "8", "--checkpoint-every", "20",
                   "--keep-checkpoints", "1000", "--checkpoint-minutes", "0", "--quiet",
                   "--no-tensorboard", "--run-dir", str(run)], ranks=2)
    assert res.returncode == 0, res.stderr
    store = CheckpointStore(run / "checkpoints")
    updates = [store.read(p).shared["trainer"]["updates"] for p in reversed(store.paths())]
    per_iteration = 8 * 16 * 4 // 256  # replay ratio x steps per iteration / batch size
    assert updates[-1] > 150  # twice as many updates as iterations
    for before, at in zip([0] + updates, updates[:-1]):  # the last one is the run's end
        assert at // 20 == before // 20 + 1 and at % 20 < per_iteration, updates
    assert len(updates) - 1 == updates[-1] // 20
    # the Q statistics that show divergence coming
    trained = [r for r in progress_rows(run) if r["q_max"]]
    assert trained and all(float(r["q_max"]) >= float(r["q_mean"]) and float(r["td_abs"]) > 0
                           for r in trained)
