import os

from mpirl.runtime.threads import cpu_share


def test_explicit_flag_wins(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    assert cpu_share(local_ranks=4, requested=3) == 3


def test_slurm_cpus_per_task(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert cpu_share(local_ranks=4) == 6


def test_without_slurm_one_thread_unless_convolutions_share_the_node(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert cpu_share(local_ranks=1) == 1
    assert cpu_share(local_ranks=1, images=True) == cores
    assert cpu_share(local_ranks=16, images=True) == max(1, cores // 16)


def test_limit_threads_gives_torch_the_share_and_numpys_blas_one_thread():
    import torch
    from threadpoolctl import threadpool_info

    from mpirl.runtime.threads import limit_threads
    before = torch.get_num_threads()
    try:
        limit_threads(2)
        assert torch.get_num_threads() == 2
        assert all(pool["num_threads"] == 1 for pool in threadpool_info()
                   if pool["user_api"] == "blas")
    finally:
        torch.set_num_threads(before)


def test_a_rank_that_imports_torch_after_the_limit_gets_it():
    """Learners import torch only when they build their networks, after the limit is set."""
    import subprocess
    import sys
    code = ("import sys; from mpirl.runtime.threads import limit_threads; "
            "assert 'torch' not in sys.modules; limit_threads(1); "
            "import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
