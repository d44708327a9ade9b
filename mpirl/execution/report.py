"""What the lead rank reports, in the same shape for every algorithm: the episode columns of a
progress row, summary.json, and a checkpoint's metadata."""
from __future__ import annotations

import time


def episode_columns(episodes: float, return_sum: float, length_sum: float) -> dict:
    """A progress row's episode columns from a window's finished-episode sums."""
    nan = float("nan")
    return {"episodes": int(episodes),
            "episode_return_mean": return_sum / episodes if episodes else nan,
            "episode_length_mean": length_sum / episodes if episodes else nan}


def run_summary(cfg, final: tuple[float, float], env_steps: int, iterations: int,
                wall_s: float, eval_s: float, target_hit: list | None, skipped: int,
                segment: int) -> dict:
    """summary.json's common keys. ``final`` is the final evaluation (mean, std);
    ``target_hit`` is [env steps, seconds] of the evaluation that reached --target-return, if
    one did (a final evaluation that reaches it counts, at the end of the run)."""
    mean, std = final
    reached = target_hit is not None or (cfg.target_return is not None
                                         and mean >= cfg.target_return)
    if reached and target_hit is None:
        target_hit = [env_steps, wall_s]
    return {
        "final_eval_return": mean,
        "final_eval_return_std": std,
        "env_steps": env_steps,
        "iterations": iterations,
        "wall_time_s": round(wall_s, 3),
        "eval_time_s": round(eval_s, 3),
        "sps": round(env_steps / wall_s, 1),
        "train_sps": round(env_steps / max(wall_s - eval_s, 1e-9), 1),
        "target_return": cfg.target_return,
        "target_reached": reached,
        "target_reached_env_steps": target_hit[0] if reached else None,
        "target_reached_time_s": round(target_hit[1], 3) if reached else None,
        "skipped_updates": skipped,
        "resumed": segment,
    }


def checkpoint_meta(cfg, layout, env_steps: int, iteration: int) -> dict:
    """A checkpoint's metadata: what resume checks the run and its layout against."""
    return {"env_steps": env_steps, "iteration": iteration, "world_size": layout.size,
            "learners": layout.learners, "actors": layout.actors,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": cfg.to_dict()}
