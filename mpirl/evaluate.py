"""``python -m mpirl.evaluate RUN_DIR``: run deterministic episodes with a run's final policy.

Needs no MPI. Exit code 2 if the directory or its weights cannot be used.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mpirl.acting.envs import describe_env, env_ref, make_env
from mpirl.acting.evaluation import evaluate_policy
from mpirl.config.fields import ConfigError
from mpirl.files.rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpirl.evaluate", description=__doc__)
    parser.add_argument("run_dir", help="a run directory written by python -m mpirl.train")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to run")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the episodes' starts")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--video", metavar="DIR", default=None,
                        help="also write an MP4 of each episode into DIR (episode-I.mp4; "
                        "pip install 'mpirl[video]')")
    args = parser.parse_args(argv)
    try:
        if args.episodes <= 0:
            raise ConfigError(f"--episodes must be positive, got {args.episodes}")
        run = RunDir(args.run_dir)
        cfg = run.load_config()
        env = make_env(env_ref(cfg))
        model = cfg.algorithm.policy(cfg, describe_env(env, cfg.env))
        env.close()
        run.load_policy(model)
    except ConfigError as e:
        print(f"mpirl: error: {e}", file=sys.stderr)
        return 2
    if args.video:
        from mpirl.acting.video import record_episodes
        try:
            recorded = record_episodes(model.eval(), env_ref(cfg), args.episodes, args.seed,
                                       Path(args.video))
        except ConfigError as e:
            print(f"mpirl: error: {e}", file=sys.stderr)
            return 2
        returns = [ret for _, ret in recorded]
    else:
        returns = evaluate_policy(model.eval(), env_ref(cfg), args.episodes, seed=args.seed)
    result = {"env": cfg.env, "episodes": args.episodes, "return_mean": float(np.mean(returns)),
              "return_std": float(np.std(returns)), "returns": returns}
    if args.json:
        print(json.dumps(result))
    else:
        if args.video:
            print(f"videos: {args.video}/episode-0.mp4 ... episode-{args.episodes - 1}.mp4")
        print(f"{cfg.env}: mean return {result['return_mean']:.2f} +- {result['return_std']:.2f} "
              f"over {args.episodes} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
