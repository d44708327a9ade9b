"""Learning-curve and scaling plots from real runs."""
import csv

import pytest

from conftest import run_job

pytest.importorskip("matplotlib")

from mpirl.plot import group_runs, main, read_run  # noqa: E402

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


def test_runs_that_differ_only_in_seed_make_one_curve(seed_runs, tmp_path):
    groups = group_runs([read_run(d, "eval") for d in seed_runs])
    assert list(groups) == ["a2c CartPole-v1"] and len(groups["a2c CartPole-v1"]) == 3
    out = tmp_path / "curves.png"
    assert main([*map(str, seed_runs), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_scaling_plot_from_a_bench_csv(tmp_path):
    bench = tmp_path / "bench.csv"
    with open(bench, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["scaling", "ranks", "sps"])
        w.writeheader()
        w.writerows([{"scaling": "weak", "ranks": r, "sps": s}
                     for r, s in [(1, 9000), (2, 17000), (4, 30000)]])
    out = tmp_path / "scaling.png"
    assert main(["--scaling", str(bench), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not an mpirl run directory"):
        main([str(tmp_path)])
