"""Learning-curve and scaling plots from real runs: what is drawn is what the runs and the
benchmark recorded."""
import csv

import numpy as np
import pytest

from helpers import evaluations, progress_rows, run_job

pytest.importorskip("matplotlib")

from matplotlib.collections import PolyCollection  # noqa: E402

from mpirl.plot import curves_figure, group_runs, main, read_run, scaling_figure  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1, 2):
        run = root / f"s{seed}"
        res = run_job(["mpirl.train", "--seed", str(seed), "--total-steps", "3000",
                       "--eval-every", "1000", "--eval-episodes", "2", "--log-every", "1000",
                       "--quiet", "--no-tensorboard", "--run-dir", str(run)])
        assert res.returncode == 0, res.stderr
        dirs.append(run)
    return dirs


def test_runs_that_differ_only_in_seed_make_one_curve_with_their_spread(seed_runs, tmp_path):
    groups = group_runs([read_run(d, "eval") for d in seed_runs])
    assert list(groups) == ["a2c CartPole-v1"] and len(groups["a2c CartPole-v1"]) == 3
    curves = [evaluations(d) for d in seed_runs]
    assert len({tuple(c) for c in curves}) > 1  # the seeds learned differently
    steps = [int(r["env_steps"]) for r in progress_rows(seed_runs[0]) if r["eval_return_mean"]]
    fig = curves_figure(seed_runs)
    by_steps, by_time = fig.axes
    for ax in (by_steps, by_time):
        (line,), (band,) = ax.get_lines(), [c for c in ax.collections
                                             if isinstance(c, PolyCollection)]
        assert "mean of 3 seeds" in line.get_label()
    # on the steps axis the curve runs from the first evaluation to the last, through the
    # seeds' mean, and the band spans their lowest to their highest value
    x, y = by_steps.get_lines()[0].get_data()
    assert x[0] == steps[0] and x[-1] == steps[-1]
    band = by_steps.collections[0].get_paths()[0].vertices
    for i, step in ((0, steps[0]), (-1, steps[-1])):
        values = [c[i] for c in curves]
        assert y[i] == pytest.approx(np.mean(values))
        edge = band[band[:, 0] == step][:, 1]
        assert edge.min() == pytest.approx(min(values))
        assert edge.max() == pytest.approx(max(values))
    out = tmp_path / "curves.png"
    assert main([*map(str, seed_runs), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_scaling_plot_draws_the_measured_points_and_ideal_linear_scaling(tmp_path):
    bench = tmp_path / "bench.csv"
    measured = [(1, 9000), (2, 17000), (4, 30000)]
    with open(bench, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["scaling", "ranks", "sps"])
        w.writeheader()
        w.writerows([{"scaling": "weak", "ranks": r, "sps": s} for r, s in measured])
    ax = scaling_figure(bench).axes[0]
    points, ideal = ax.get_lines()
    assert [tuple(p) for p in np.column_stack(points.get_data())] == measured
    assert list(ideal.get_data()[1]) == [9000, 18000, 36000]
    out = tmp_path / "scaling.png"
    assert main(["--scaling", str(bench), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not an mpirl run directory"):
        main([str(tmp_path)])


def test_runs_of_different_algorithms_are_labelled_by_algorithm_and_their_own_differences():
    """The settings of two algorithms differ by their defaults: a label lists only what tells
    apart runs of the same algorithm and env."""
    def run(algo, seed, **cfg):
        return {"config": {"algo": algo, "env": "ALE/Pong-v5", "seed": seed, **cfg}}
    runs = [run("impala", 0, lr=6e-4, n_steps=20), run("ppo", 0, lr=2.5e-4, n_steps=128),
            run("ppo", 1, lr=2.5e-4, n_steps=128), run("ppo", 0, lr=1e-4, n_steps=128)]
    groups = group_runs(runs)
    assert list(groups) == ["impala ALE/Pong-v5", "ppo ALE/Pong-v5 (lr=0.00025)",
                            "ppo ALE/Pong-v5 (lr=0.0001)"]
    assert [len(g) for g in groups.values()] == [1, 2, 1]
