"""Distributed tabular Q-learning through mpirl's generic parameter server.

    mpirun -n 4 python examples/tabular_q_server.py --servers 2

The Q-table (states x actions, one flat float32 vector) is split over the first ``--servers``
ranks. Every other rank is a worker: it plays epsilon-greedy episodes with its copy of the
table for ``--push-every`` steps, averages the gradient of 0.5 * td**2 of each table entry over
that entry's visits (a taxi stuck at a wall repeats one entry many times; a sum would multiply
its step) and pushes it. A server subtracts ``--alpha`` x that gradient from its slice (a
Q-learning step) and sends the slice back. Nothing here is specific to neural networks: the
server only knows a flat vector and an update rule.

At the end the lead server assembles the table, plays greedy episodes and prints their mean
return, with each server's update rate.
"""
from __future__ import annotations

import argparse
import sys

import gymnasium as gym
import numpy as np

from mpirl import comm
from mpirl.ps import ParameterClient, ParameterServer, ServerHooks, SGDRule, shard_bounds

STOP = 0  # reply slot: the lead's stop flag


class Budget(ServerHooks):
    """Lead server: counts the workers' env steps (report slot 0) and stops them at the
    budget."""

    def __init__(self, total_steps: int):
        self.total_steps, self.env_steps = total_steps, 0

    def on_message(self, server, worker, kind, report, reply):
        self.env_steps += int(report[0])
        reply[STOP] = float(self.env_steps >= self.total_steps)


def work(args, world, servers, bounds, n_states, n_actions, rank) -> None:
    env = gym.make(args.env)
    rng = np.random.default_rng([args.seed, rank])
    q = np.zeros(n_states * n_actions, dtype=np.float32)  # this worker's copy of the table
    table = q.reshape(n_states, n_actions)
    grad = np.zeros_like(q)
    visits = np.zeros_like(q)
    client = ParameterClient(world, servers, bounds)
    s, _ = env.reset(seed=args.seed * 1000 + rank)
    while True:
        grad[:] = 0.0
        visits[:] = 0.0
        for _ in range(args.push_every):
            if rng.random() < args.epsilon:
                a = int(rng.integers(n_actions))
            else:  # greedy, ties broken at random
                row = table[s]
                a = int(rng.choice(np.flatnonzero(row == row.max())))
            s2, r, terminated, truncated, _ = env.step(a)
            target = r + (0.0 if terminated else args.gamma * table[s2].max())
            grad[s * n_actions + a] -= target - table[s, a]  # d(0.5 td^2)/dQ(s, a)
            visits[s * n_actions + a] += 1.0
            s = s2
            if terminated or truncated:
                s, _ = env.reset()
        np.divide(grad, visits, out=grad, where=visits > 0)
        client.report[0] = args.push_every
        replies = client.exchange(grad, q)
        if replies[0][STOP]:
            break
    client.bye()


def evaluate(table: np.ndarray, env_id: str, episodes: int, seed: int) -> float:
    env = gym.make(env_id)
    total = 0.0
    for i in range(episodes):
        s, _ = env.reset(seed=10_000 + seed * 1000 + i)
        done = False
        while not done:
            s, r, terminated, truncated, _ = env.step(int(table[s].argmax()))
            total += r
            done = terminated or truncated
    return total / episodes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default=None,
                   help="a gymnasium env with Discrete states (default: Taxi, v4 or v3)")
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--total-steps", type=int, default=400_000)
    p.add_argument("--push-every", type=int, default=16)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.env is None:
        args.env = "Taxi-v4" if "Taxi-v4" in gym.registry else "Taxi-v3"
    world = comm.world()
    rank, size = world.Get_rank(), world.Get_size()
    if not 1 <= args.servers < size:
        if rank == 0:
            print(f"error: --servers {args.servers} needs 1 <= servers < ranks ({size}); "
                  f"launch with mpirun -n {args.servers + 1} or more", file=sys.stderr)
        return 2
    probe = gym.make(args.env)
    n_states, n_actions = probe.observation_space.n, probe.action_space.n
    servers = list(range(args.servers))
    bounds = shard_bounds(n_states * n_actions, args.servers)
    values = stats = None
    try:
        if rank < args.servers:
            lo, hi = bounds[rank]
            values = np.zeros(hi - lo, dtype=np.float32)
            hooks = Budget(args.total_steps) if rank == 0 else None
            server = ParameterServer(world, rank, servers, list(range(args.servers, size)),
                                     values, SGDRule(values, args.alpha), hooks=hooks)
            stats = server.serve()
        else:
            work(args, world, servers, bounds, n_states, n_actions, rank)
    except Exception as e:  # end every rank now: the others would wait for this one forever
        print(f"rank {rank} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        comm.abort(world, 1)
    parts = comm.gather_to_root(world, (values, stats))
    if parts is not None:
        table = np.concatenate([v for v, _ in parts[:args.servers]])
        mean = evaluate(table.reshape(n_states, n_actions), args.env, args.eval_episodes,
                        args.seed)
        rates = ", ".join(f"{s.updates / max(s.seconds, 1e-9):,.0f}"
                          for _, s in parts[:args.servers])
        print(f"{args.env}: {size - args.servers} workers, {args.servers} servers; greedy "
              f"return {mean:.2f} over {args.eval_episodes} episodes; updates/s per server: "
              f"{rates}; staleness max {max(s.staleness_max for _, s in parts[:args.servers])}")
    comm.barrier(world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
