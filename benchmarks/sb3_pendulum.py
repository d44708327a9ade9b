"""Stable-Baselines3's SAC or TD3 on Pendulum-v1 at rl-baselines3-zoo's settings, evaluated on
the start states mpirl evaluates on, so that the two learning curves compare round by round.

mpirl evaluates round k (k = 0, 1, ...) of a run with seed S on a fixed set of start states
(``mpirl.acting.evaluation.evaluate_policy(..., seed=S, index=k)``); a Pendulum policy's return
depends as much on where it starts as on how good it is, so two curves evaluated on different
start states differ by more than the policies do. This script trains SB3 with seed S and, every
``--eval-every`` env steps, plays SB3's deterministic policy on mpirl's round-k start states.

Needs stable-baselines3 and mpirl (without its dependencies) in one environment::

    pip install torch==2.13.0 stable-baselines3 && pip install --no-deps -e .
    python benchmarks/sb3_pendulum.py --algo sac --seed 0

and is compared with::

    mpirun -n 2 python -m mpirl.train --algo sac --env Pendulum-v1 --learners 2 --lr 1e-3 \\
        --total-steps 20000 --eval-every 400 --eval-episodes 10 --seed 0

It prints one line per evaluation (env steps, mean return), then the env steps to the first
evaluation at or above ``--threshold``, to the one from which all later ones stay there, and the
last evaluation's mean return.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

from mpirl.acting.evaluation import evaluate_policy

ENV = "Pendulum-v1"


def zoo_model(algo: str, seed: int):
    """rl-baselines3-zoo's Pendulum-v1 hyperparameters (sac.yml, td3.yml)."""
    env = make_vec_env(ENV, n_envs=1, seed=seed)
    if algo == "sac":  # SB3's defaults otherwise: 256x256, batch 256, one update per step
        return SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu")
    return TD3("MlpPolicy", env, gamma=0.98, buffer_size=200_000, learning_starts=10_000,
               gradient_steps=-1, train_freq=(1, "episode"), learning_rate=1e-3,
               policy_kwargs=dict(net_arch=[400, 300]), seed=seed, device="cpu",
               action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)))


class PlaysLikeMpirl:
    """An SB3 model behind the two calls mpirl's evaluation makes of a policy."""

    def __init__(self, model):
        self.model = model

    def act(self, obs, rng, deterministic=True):
        return self.model.predict(obs, deterministic=True)[0]

    def to_env(self, actions):
        return actions  # SB3's predict already scales to the env's bounds


class EvaluateOnMpirlStarts(BaseCallback):
    def __init__(self, every: int, episodes: int, seed: int):
        super().__init__()
        self.every, self.episodes, self.seed = every, episodes, seed
        self.curve: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            returns = evaluate_policy(PlaysLikeMpirl(self.model), ENV, self.episodes,
                                      seed=self.seed, index=len(self.curve))
            self.curve.append((self.num_timesteps, float(np.mean(returns))))
            print(f"{self.num_timesteps} {self.curve[-1][1]:.1f}", flush=True)
        return True


def crossings(curve: list[tuple[int, float]], threshold: float) -> tuple[int | None, int | None]:
    """Env steps of the first evaluation at or above ``threshold``, and of the first from which
    every later one is (None where there is none)."""
    first = next((steps for steps, ret in curve if ret >= threshold), None)
    stays = None
    for steps, ret in reversed(curve):
        if ret < threshold:
            break
        stays = steps
    return first, stays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algo", choices=("sac", "td3"), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--total-steps", type=int, default=20_000)
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=-200.0)
    ap.add_argument("--out", default="", help="write the curve here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = zoo_model(args.algo, args.seed)
    callback = EvaluateOnMpirlStarts(args.eval_every, args.eval_episodes, args.seed)
    model.learn(args.total_steps, callback=callback)
    first, stays = crossings(callback.curve, args.threshold)
    print(f"first at or above {args.threshold:g}: {first} steps; stays from: {stays} steps; "
          f"last: {callback.curve[-1][1]:.1f}" if callback.curve else "no evaluation")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(callback.curve, f)


if __name__ == "__main__":
    main()
