"""Videos of a policy: MP4 files of deterministic episodes, one per episode, through imageio's
ffmpeg plugin (``pip install 'mpirl[video]'``: imageio and imageio-ffmpeg, which brings its own
ffmpeg). Frames are the env's ``render()`` in ``rgb_array`` mode: classic control, Box2D,
MuJoCo and Atari (the game's colour screen, not the 84x84 frames the policy sees) alike."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from mpirl.acting.envs import EnvRef, EnvVector
from mpirl.acting.evaluation import play_step, playing_state
from mpirl.config.fields import ConfigError


def _writer(path: Path, fps: float):
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the plugin the MP4 writer needs)
    except ImportError:
        raise ConfigError("videos need imageio and its ffmpeg plugin: pip install "
                          "'mpirl[video]'") from None
    # macro_block_size 1: any frame size, no resizing
    return imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1)


def record_episodes(model, env: EnvRef | str, episodes: int, seed: int, out_dir: Path,
                    index: int = 0, names: list[str] | None = None) -> list[tuple[Path, float]]:
    """Play ``episodes`` deterministic episodes with the policy (the starts of
    ``mpirl.acting.evaluation.evaluate_policy`` with the same ``seed`` and ``index``) and write
    ``out_dir/NAME.mp4`` for each (``names``, by default episode-0, episode-1, ...); returns
    (path, return) per episode."""
    # pygame (classic control's renderer) needs no display for rgb_array frames
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not os.environ.get("DISPLAY"):  # MuJoCo renders off-screen through EGL on a batch node
        os.environ.setdefault("MUJOCO_GL", "egl")
    ref = env if isinstance(env, EnvRef) else EnvRef(env)
    ref = replace(ref, kwargs={**ref.kwargs, "render_mode": "rgb_array"})
    out_dir.mkdir(parents=True, exist_ok=True)
    envs = EnvVector(ref, episodes, seed, rank=index, stream="evaluation")
    fps = float(envs.envs[0].metadata.get("render_fps") or 30)
    names = names or [f"episode-{i}" for i in range(episodes)]
    paths = [out_dir / f"{n}.mp4" for n in names]
    writers = [_writer(p, fps) for p in paths]
    returns: list[float | None] = [None] * episodes
    rng = np.random.default_rng(0)  # unused by deterministic actions
    state = playing_state(model, episodes)
    try:
        for i, e in enumerate(envs.envs):
            writers[i].append_data(_frame(e))
        while any(r is None for r in returns):
            play_step(model, envs, rng, state)
            done, _ = envs.pop_episodes_by_env()
            ended = set()
            for i, ret in done:
                if returns[i] is None:
                    returns[i] = ret
                    ended.add(i)
                    writers[i].close()
            for i, e in enumerate(envs.envs):  # (an ended env shows its next episode: skip)
                if returns[i] is None and i not in ended:
                    writers[i].append_data(_frame(e))
    finally:
        for w in writers:
            w.close()
        envs.close()
    return [(p, float(r)) for p, r in zip(paths, returns)]


def _frame(env) -> np.ndarray:
    import gymnasium as gym
    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as e:  # classic control draws with pygame
        raise ConfigError(f"the env cannot render frames for a video: {e} (pip install "
                          "'mpirl[video]')") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ConfigError(f"the env renders no rgb_array frames (got {type(frame).__name__}); "
                          "a video needs render_mode='rgb_array'")
    return frame
