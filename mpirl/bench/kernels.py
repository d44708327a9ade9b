"""The commands that time one piece of the machinery: allreduce, sumtree."""
from __future__ import annotations

import argparse
import time

import numpy as np



def bench_allreduce(args: argparse.Namespace) -> list[dict]:
    import torch

    from mpirl import comm

    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    rows = []
    for n in [int(float(p)) for p in args.params]:
        model = torch.nn.Linear(n, 1, bias=False)  # n parameters
        averager = comm.GradientAverager(model.parameters(), world)
        x = torch.randn(8, n)

        def backward() -> None:  # the work an update does before it averages
            averager.zero_grad()
            averager.backward(model(x).square().mean())

        def raw() -> None:
            comm.raw_allreduce_sum_(world, averager.flat.numpy())

        def ours() -> None:
            averager.average()

        times: dict[str, list[float]] = {}
        for name, sync in [("raw", raw), ("mpirl", ours)] * 2:  # interleaved, twice
            samples = []
            for i in range(args.warmup + args.repeat):
                comm.barrier(world)
                if sync is ours:
                    averager.announce()  # as an update does, before its forward pass
                backward()
                t = time.perf_counter()
                sync()
                if i >= args.warmup:
                    samples.append(time.perf_counter() - t)
            times.setdefault(name, []).append(float(np.median(samples)))
        # the slowest rank decides how long a collective takes; best of the two rounds
        per_rank = comm.gather_objects(world, times)
        raw_s = min(max(t["raw"][i] for t in per_rank) for i in range(2))
        our_s = min(max(t["mpirl"][i] for t in per_rank) for i in range(2))
        rows.append({"params": n, "bytes": n * 4, "ranks": size,
                     "raw_allreduce_us": round(raw_s * 1e6, 1),
                     "mpirl_average_us": round(our_s * 1e6, 1),
                     "ratio": round(our_s / raw_s, 3)})
    return rows if rank == 0 else []


def bench_sumtree(args: argparse.Namespace) -> list[dict]:
    from mpirl.replay import SumTree
    rng = np.random.default_rng(0)
    size, batch = int(float(args.size)), int(float(args.batch))
    tree = SumTree(size)
    tree.set(np.arange(size), rng.random(size) + 1e-3)
    rows = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        index = tree.sample(batch, rng)
        sample_s = time.perf_counter() - t
        t = time.perf_counter()
        tree.set(index, rng.random(batch) + 1e-3)
        rows.append((sample_s, time.perf_counter() - t))
    sample_ms, update_ms = (1e3 * float(np.median(x)) for x in zip(*rows))
    return [{"tree_size": size, "batch": batch, "sample_ms": round(sample_ms, 2),
             "update_ms": round(update_ms, 2)}]
