"""The benchmark commands run and write the columns the plots and the README read."""
import csv

from helpers import run_job


def test_sps_bench_weak_and_strong_write_a_csv(tmp_path):
    for scaling in ("weak", "strong"):
        out = tmp_path / f"{scaling}.csv"
        res = run_job(["mpirl.bench", "sps", "--ranks", "1", "3", "--total-steps", "3000",
                       "--scaling", scaling, "--global-envs", "8", "--csv", str(out)])
        assert res.returncode == 0, res.stderr
        rows = list(csv.DictReader(open(out)))
        assert [r["ranks"] for r in rows] == ["1", "3"]
        assert {"sps", "efficiency", "learner_wait", "actor_wait"} <= set(rows[0])
        envs = [int(r["envs_per_actor"]) for r in rows]
        assert envs == ([16, 16] if scaling == "weak" else [8, 4])  # 8 envs over 1, 2 actors
        assert rows[1]["actor_wait"] != ""


def test_allreduce_bench_under_mpirun(tmp_path):
    out = tmp_path / "allreduce.csv"
    res = run_job(["mpirl.bench", "allreduce", "--params", "1e3", "1e4", "--repeat", "20",
                   "--warmup", "2", "--csv", str(out)], ranks=2)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out)))
    assert [r["params"] for r in rows] == ["1000", "10000"] and float(rows[0]["ratio"]) > 0


def test_sumtree_bench_prints_milliseconds(tmp_path):
    out = tmp_path / "tree.csv"
    res = run_job(["mpirl.bench", "sumtree", "--size", "1e4", "--batch", "1e3", "--repeat", "3",
                   "--csv", str(out)])
    assert res.returncode == 0, res.stderr
    row = next(csv.DictReader(open(out)))
    assert row["tree_size"] == "10000" and float(row["sample_ms"]) > 0


def test_compare_bench_interleaves_the_algorithms(tmp_path):
    out = tmp_path / "compare.csv"
    res = run_job(["mpirl.bench", "compare", "--algos", "a2c", "impala", "--ranks", "3",
                   "--rounds", "1", "--total-steps", "6000", "--csv", str(out)])
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out)))
    assert [r["algo"] for r in rows] == ["a2c", "impala"]
    assert float(rows[0]["vs_first"]) == 1.0 and float(rows[1]["vs_first"]) > 0
    assert rows[0]["policy_lag"] == "" and float(rows[1]["policy_lag"]) >= 0
    assert rows[0]["actor_wait"] != "" and "impala / a2c throughput: median" in res.stdout


def test_startup_bench_times_the_first_step_and_counts_ranks_with_torch(tmp_path):
    out = tmp_path / "startup.csv"
    res = run_job(["mpirl.bench", "startup", "--ranks", "1", "3", "--rounds", "1",
                   "--total-steps", "500", "--csv", str(out)])
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out)))
    assert [r["ranks"] for r in rows] == ["1", "3"]
    for r in rows:
        assert 0 < float(r["first_step_s"]) <= float(r["all_stepping_s"]) <= float(r["run_s"])
    # the learner imports torch; A2C's two actors act in numpy without it
    assert [r["ranks_with_torch"] for r in rows] == ["1/1", "1/3"]
