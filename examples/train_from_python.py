"""Training from a Python script: ``mpirun -n 4 python examples/train_from_python.py`` (or
``python examples/train_from_python.py`` for one process). Every rank runs the script; each
calls ``train``, which returns the run directory once the run is over.
"""
import json
import sys

import gymnasium as gym

from mpirl import train
from mpirl.comm import world


def short_cartpole(max_episode_steps: int = 500) -> gym.Env:
    """The env, made by your own code on every rank (``env_kwargs`` are its arguments)."""
    return gym.make("CartPole-v1", max_episode_steps=max_episode_steps)


if __name__ == "__main__":
    budget = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    run_dir = train({"algo": "ppo", "total_steps": budget, "env_kwargs": {"max_episode_steps": 200},
                     "quiet": True, "tensorboard": False},
                    env=short_cartpole, run_dir=f"runs/from-python-{budget}")
    if world().Get_rank() == 0:
        summary = json.loads((run_dir / "summary.json").read_text())
        print(f"{run_dir}: final evaluation return {summary['final_eval_return']:.1f} "
              f"after {summary['env_steps']:,} env steps")
