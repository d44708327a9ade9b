"""The options every algorithm reads: what to train, how long, the network and optimizer, and
how the run is recorded, checkpointed and resumed. Each algorithm adds its own groups
(``mpirl.algos``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from mpirl.config.fields import ConfigError, cli_flag, option, require

DEVICES = ("cpu", "cuda", "auto")
OPTIMIZERS = ("rmsprop", "adam")


@dataclass
class GeneralOptions:
    """general options (every algorithm)"""

    # --- what to train
    algo: str = option("a2c", "Algorithm.")
    env: str = option("CartPole-v1", "Gymnasium env id, or 'package.module:Class' for your own "
                      "env.")
    env_kwargs: str = option(
        "", "Keyword arguments for the env's constructor, as a JSON object (e.g. "
        "'{\"g\": 2.0}'; in a config file, a mapping), for registered ids and "
        "'package.module:Class' alike.")
    env_wrapper: str | None = option(
        None, "'package.module:function' that takes each env (training and evaluation) and "
        "returns the env to use, e.g. wrapped.")
    seed: int = option(0, "Seed for weights, envs and action sampling; env seeds also depend "
                       "on rank.", bounds="[0, inf)")
    total_steps: int = option(300_000, "Training budget in environment steps, summed over all "
                              "actors.", bounds="[1, inf)")
    target_return: float | None = option(
        None, "Stop once the mean evaluation return reaches this value.",
        bounds="(-inf, inf)")

    # --- where it runs
    envs_per_actor: int = option(16, "Environments each actor steps in-process, as one "
                                 "vector.", bounds="[1, inf)")
    device: str = option("cpu", "Where learners compute: cpu, cuda (node-local GPU), or auto.",
                         choices=DEVICES)
    torch_threads: int = option(
        0, "Torch threads per rank; 0 = SLURM_CPUS_PER_TASK, else 1 (image observations: "
        "this node's cores / ranks).",
        bounds="[0, inf)")

    # --- training
    n_steps: int = option(5, "Steps each env collects per update (A2C, PPO: the rollout "
                          "length; DQN: the chunk an actor sends its learner at a time).",
                          bounds="[1, inf)")
    gamma: float = option(0.99, "Discount factor.", bounds="(0, 1]")
    max_grad_norm: float = option(0.5, "Clip the averaged gradient to this global norm; 0 "
                                  "disables.", bounds="[0, inf)")
    optimizer: str = option("rmsprop", "Optimizer.", choices=OPTIMIZERS)
    lr: float = option(2e-3, "Learning rate.", bounds="(0, inf)")
    lr_schedule: str = option("linear", "Learning-rate schedule over the budget.",
                              choices=("constant", "linear"))
    hidden_sizes: list[int] = option((64, 64), "Hidden layer sizes of the policy and value "
                                     "MLPs (image observations get the Nature CNN instead).")
    activation: str = option("tanh", "Hidden activation.", choices=("tanh", "relu"))

    # --- evaluation and logging
    eval_episodes: int = option(10, "Deterministic episodes per evaluation.", bounds="[1, inf)")
    eval_every: int = option(10_000, "Evaluate every this many env steps; 0 = only at the "
                             "end.", bounds="[0, inf)")
    log_every: int = option(10_000, "Write a progress row every this many env steps.",
                            bounds="[1, inf)")
    run_dir: str | None = option(
        None, "Run directory; default runs/<algo>-<env>-<SLURM job id or time>.")
    tensorboard: bool = option(True, "Write TensorBoard event files into the run directory.")
    quiet: bool = option(False, "Do not print progress rows on the terminal.")
    wandb: bool = option(False, "Log the config, progress rows, evaluations and videos to "
                         "Weights & Biases (pip install 'mpirl[wandb]'); WANDB_MODE=offline "
                         "writes them into RUN_DIR/wandb for a later 'wandb sync'.")
    wandb_project: str = option("mpirl", "The W&B project of --wandb.")
    timing: bool = option(True, "Measure where each rank's time goes (cheap); --no-timing "
                          "turns it off, e.g. to measure its cost.")

    # --- checkpoints, resume and failure handling
    checkpoint_every: int = option(0, "Write a checkpoint every this many updates (A2C, PPO: "
                                   "rollout batches; DQN: gradient updates; A3C: the lead "
                                   "server's updates); 0 = by time only.", bounds="[0, inf)")
    checkpoint_minutes: float = option(
        10.0, "Write a checkpoint every this many minutes of training; 0 = by updates only.",
        bounds="[0, inf)")
    keep_checkpoints: int = option(3, "How many of the newest checkpoints to keep.",
                                   bounds="[1, inf)")
    resume: str | None = option(
        None, "Continue the run in this run directory from its newest readable checkpoint.")
    auto_resume: bool = option(
        False, "If the run directory (--run-dir, or the default name) holds a checkpoint, "
        "continue from it as --resume would; else start the run. For requeued batch jobs.")
    override: list[str] = option(
        (), "With --resume: the config fields you mean to change from the saved run.")
    comm_timeout: float = option(
        0.0, "Abort, naming who waits for what, when a rank waits on communication (or a "
        "server hears nothing from a worker) longer than this many seconds; set it above an "
        "evaluation's length. 0 = wait forever (but a stop signal still ends a wait on a hung "
        "rank).", bounds="[0, inf)")
    nonfinite: str = option("stop", "On a NaN or Inf loss or gradient: stop (keeping the last "
                            "good checkpoint), or skip that update and count it.",
                            choices=("stop", "skip"))
    video_every: int = option(
        0, "Record the first episode of every this many evaluations as an MP4 in "
        "RUN_DIR/videos (the lead learner; pip install 'mpirl[video]'); 0 = never.",
        bounds="[0, inf)")

    # --- config file
    config: str | None = option(None, "YAML or TOML file with any of these fields; flags "
                                "override it.")

    @staticmethod
    def validate(cfg) -> None:
        cores = os.cpu_count() or 1
        require(cfg.torch_threads <= cores,
                f"--torch-threads {cfg.torch_threads} is more than this node's {cores} cores")
        if cfg.override and not (cfg.resume or cfg.auto_resume):
            raise ConfigError("--override only applies with --resume RUN_DIR or --auto-resume")
        require(bool(cfg.hidden_sizes) and all(h > 0 for h in cfg.hidden_sizes),
                f"--hidden-sizes must be positive integers, got {cfg.hidden_sizes}")
        env_kwargs(cfg)
        if cfg.wandb:
            import importlib.util
            require(importlib.util.find_spec("wandb") is not None,
                    "--wandb needs the wandb package: pip install 'mpirl[wandb]'")
        if cfg.video_every:
            import importlib.util
            require(all(importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg")),
                    "--video-every needs imageio and its ffmpeg plugin: pip install "
                    "'mpirl[video]'")
        if cfg.env_wrapper is not None:
            module, _, name = cfg.env_wrapper.partition(":")
            require(bool(module) and name.isidentifier(),
                    f"--env-wrapper must be 'package.module:function', got {cfg.env_wrapper!r}")


@dataclass
class MinibatchOptions:
    """minibatches"""

    batch_size: int = option(256, "Minibatch per gradient update, summed over the learners.",
                             bounds="[1, inf)")


def env_kwargs(cfg) -> dict:
    """--env-kwargs as a dict (ConfigError if it is not a JSON object)."""
    if not cfg.env_kwargs:
        return {}
    try:
        value = json.loads(cfg.env_kwargs)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--env-kwargs is not valid JSON ({e.msg}): {cfg.env_kwargs}") from None
    require(isinstance(value, dict),
            f"--env-kwargs must be a JSON object of keyword arguments, got {cfg.env_kwargs}")
    return value


__all__ = ["DEVICES", "GeneralOptions", "OPTIMIZERS", "cli_flag"]
