"""Training speed against Stable-Baselines3, side by side: the figures behind README's speed
tables for DQN at rl-baselines3-zoo's LunarLander-v3 settings and SAC at SB3's defaults on
Pendulum-v1.

A shared host's speed drifts by up to 2x within minutes, so one run of each proves nothing.
This script interleaves them (SB3, then every mpirl layout, round after round) and prints each
round's steps per second and each layout's ratio to the SB3 run of the same round::

    python benchmarks/sb3_speed.py --case dqn --rounds 3 --sb3-python /path/to/sb3-venv/bin/python
    python benchmarks/sb3_speed.py --case sac --rounds 3 --sb3-python ...

``--sb3-python`` is a Python with stable-baselines3 (and the same torch) installed, and mpirl
without its dependencies for SAC's model (``sb3_pendulum.zoo_model``), e.g. a scratch venv:
``python -m venv /tmp/sb3 && /tmp/sb3/bin/pip install torch==2.13.0 stable-baselines3 box2d
pygame && /tmp/sb3/bin/pip install --no-deps -e .``. SB3 runs on one torch thread, as each
mpirl rank does, and is timed around its ``learn`` call; mpirl's figure is its summary's
``train_sps``: the run's env steps over its wall time, start-up and evaluation excluded (SB3's
``learn`` evaluates nothing; mpirl's periodic evaluation is off and its final one, 0.4 s of
LunarLander, is not counted). Both do the same number of updates: the zoo's DQN starts
learning at once (``learning_starts=0``), and mpirl is given the same.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

# rl-baselines3-zoo's dqn.yml for LunarLander: 1 env, 256x256, batch 128, 4 gradient steps
# every 4 env steps from the first step on, target update every 250 updates, n-step 1
DQN_STEPS = 12_000
DQN_MPIRL = ("--algo dqn --env LunarLander-v3 --envs-per-actor 1 --n-steps 4 --batch-size 128 "
             "--hidden-sizes 256 256 --replay-ratio 128 --target-update 250 --n-step 1 "
             "--lr 6.3e-4 --lr-schedule constant --learning-starts 0 --exploration linear "
             "--exploration-fraction 0.12 --eps-final 0.1 --replay-size 50000 "
             f"--total-steps {DQN_STEPS} --eval-every 0")
# SB3's SAC defaults (256x256, batch 256, one update per env step) with the zoo's lr 1e-3
SAC_STEPS = 4_000
SAC_MPIRL = f"--algo sac --env Pendulum-v1 --lr 1e-3 --total-steps {SAC_STEPS} --eval-every 0"

CASES = {
    "dqn": [("mpirl, 2 ranks --learners 2 --no-double-q (SB3's target)", 2,
             f"{DQN_MPIRL} --learners 2 --no-double-q"),
            ("mpirl, 2 ranks --learners 2 (double Q)", 2, f"{DQN_MPIRL} --learners 2"),
            ("mpirl, 1 rank --no-double-q", 1, f"{DQN_MPIRL} --no-double-q")],
    "sac": [("mpirl, 2 ranks --learners 2", 2, f"{SAC_MPIRL} --learners 2"),
            ("mpirl, 1 rank", 1, SAC_MPIRL)],
}


def sb3_run(case: str) -> float:
    """Train SB3 on this process's one torch thread; returns env steps per second."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    torch.set_num_threads(1)
    if case == "dqn":
        model = DQN("MlpPolicy", gym.make("LunarLander-v3"), learning_rate=6.3e-4,
                    batch_size=128, buffer_size=50_000, learning_starts=0,
                    target_update_interval=250, train_freq=4, gradient_steps=-1,
                    exploration_fraction=0.12, exploration_final_eps=0.1,
                    policy_kwargs=dict(net_arch=[256, 256]), seed=0, device="cpu")
        steps = DQN_STEPS
    else:
        from sb3_pendulum import zoo_model  # (beside this script)
        model = zoo_model("sac", seed=0)
        steps = SAC_STEPS
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def mpirl_run(mpirun: str, ranks: int, args: str) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        run = os.path.join(run_dir, "run")
        cmd = [*shlex.split(mpirun), "-n", str(ranks), sys.executable, "-m", "mpirl.train",
               *shlex.split(args), "--run-dir", run]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise SystemExit(f"no launcher {cmd[0]!r} on PATH: activate the venv that has "
                             "mpirun, or pass --mpirun") from None
        summary = os.path.join(run, "summary.json")
        if out.returncode != 0 or not os.path.exists(summary):
            raise SystemExit(f"mpirl failed ({out.returncode}): {' '.join(cmd)}\n"
                             f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
        with open(summary) as f:
            return float(json.load(f)["train_sps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sb3-python", default=sys.executable,
                        help="a Python with stable-baselines3 installed (default: this one)")
    parser.add_argument("--mpirun", default="mpirun", help="the launcher, with any options")
    parser.add_argument("--sb3-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_only:  # the SB3 side, in --sb3-python
        print(f"{sb3_run(args.case):.1f}")
        return
    layouts = CASES[args.case]
    table: dict[str, list[float]] = {"SB3": [], **{name: [] for name, _, _ in layouts}}
    for r in range(1, args.rounds + 1):
        out = subprocess.run([args.sb3_python, os.path.abspath(__file__), "--case", args.case,
                              "--sb3-only"], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"SB3 failed:\n{out.stderr[-2000:]}")
        sb3 = float(out.stdout.split()[-1])
        table["SB3"].append(sb3)
        print(f"round {r}: SB3 {sb3:,.0f} steps/s", flush=True)
        for name, ranks, mpirl_args in layouts:
            sps = mpirl_run(args.mpirun, ranks, mpirl_args)
            table[name].append(sps)
            print(f"round {r}: {name} {sps:,.0f} steps/s ({sps / sb3:.2f}x)", flush=True)
    print(f"\n{args.case}: steps/s per round, and against SB3 in the same round")
    for name, values in table.items():
        ratios = [v / s for v, s in zip(values, table["SB3"])]
        line = ", ".join(f"{v:,.0f}" for v in values)
        print(f"  {name}: {line}" + ("" if name == "SB3" else
                                     "  (" + ", ".join(f"{x:.2f}x" for x in ratios) + ")"))


if __name__ == "__main__":
    main()
