"""The one run configuration: a dataclass whose every field is a CLI flag and a config-file key,
with each algorithm's defaults and the checks on values.

``validate`` checks everything that does not need MPI, so bad input fails before any traffic.
Where values come from (flags, config files, presets, a resumed run's saved config) is
``mpirl.config.sources``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mpirl.config.fields import ConfigError


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


ALGOS = ("a2c", "ppo", "dqn", "a3c")
DEVICES = ("cpu", "cuda", "auto")
OPTIMIZERS = ("rmsprop", "adam")


@dataclass
class Config:
    """Everything that defines a training run."""

    # --- what to train
    algo: str = _f("a2c", "Algorithm.", choices=ALGOS)
    env: str = _f("CartPole-v1", "Gymnasium env id, or 'package.module:Class' for your own env.")
    seed: int = _f(0, "Seed for weights, envs and action sampling; env seeds also depend on rank.")
    total_steps: int = _f(300_000, "Training budget in environment steps, summed over all actors.")
    target_return: float | None = _f(
        None, "Stop once the mean evaluation return reaches this value.")

    # --- layout
    learners: int = _f(1, "Number of learner ranks; the other ranks are actors.")
    envs_per_actor: int = _f(16, "Environments each actor steps in-process, as one vector.")
    device: str = _f("cpu", "Where learners compute: cpu, cuda (node-local GPU), or auto.",
                     choices=DEVICES)
    precision: str = _f(
        "fp32", "Arithmetic of the CNN trunk (image observations): fp32, or bf16 = bfloat16 "
        "autocast of its convolutions and hidden layer, with float32 weights, optimizer and "
        "heads (CNN updates ~2.4x faster on CPUs with AVX512-BF16 or AMX, and on GPUs).",
        choices=("fp32", "bf16"))
    torch_threads: int = _f(
        0, "Torch threads per rank; 0 = SLURM_CPUS_PER_TASK, else this node's cores / ranks.")

    # --- algorithm (A2C)
    n_steps: int = _f(5, "Steps each env collects per update (A2C, PPO: the rollout length; "
                      "DQN: the chunk an actor sends its learner at a time).")
    gamma: float = _f(0.99, "Discount factor.")
    gae_lambda: float = _f(1.0, "GAE lambda; 1.0 gives plain n-step returns.")
    ent_coef: float = _f(0.0, "Entropy bonus weight.")
    vf_coef: float = _f(0.5, "Value loss weight.")
    max_grad_norm: float = _f(0.5, "Clip the averaged gradient to this global norm; 0 disables.")
    optimizer: str = _f("rmsprop", "Optimizer.", choices=OPTIMIZERS)
    lr: float = _f(2e-3, "Learning rate.")
    lr_schedule: str = _f("linear", "Learning-rate schedule over the budget.",
                          choices=("constant", "linear"))
    hidden_sizes: list[int] = _f((64, 64), "Hidden layer sizes of the policy and value MLPs "
                                 "(image observations get the Nature CNN instead).")
    activation: str = _f("tanh", "Hidden activation.", choices=("tanh", "relu"))
    log_std_init: float = _f(0.0, "Box actions: initial log standard deviation of the Gaussian "
                             "policy (state-independent, learned).")
    action_bounds: str = _f(
        "clip", "Box actions: clip the Gaussian sample to the action bounds, or squash it with "
        "tanh into them.", choices=("clip", "squash"))

    # --- algorithm (PPO); the loss adds A2C's value and entropy terms
    n_epochs: int = _f(10, "PPO: passes over each rollout batch.")
    clip_range: float = _f(0.2, "PPO: clipping range of the probability ratio.")
    clip_schedule: str = _f("constant", "PPO: clip-range schedule over the budget.",
                            choices=("constant", "linear"))
    clip_range_vf: float | None = _f(
        None, "PPO: clip the value prediction to this distance from the rollout's value; "
        "unset = no value clipping.")
    target_kl: float | None = _f(
        None, "PPO: end an iteration's epochs early once the approximate KL to the rollout "
        "policy, averaged over the learners, exceeds 1.5 x this; unset = never.")
    normalize_advantage: bool = _f(True, "PPO: normalize advantages by the mean and std of "
                                   "the global batch (over all learners).")

    # --- input and reward normalization (A2C, PPO), synchronized over all learners
    normalize_obs: bool = _f(False, "Normalize observations by running mean and variance over "
                             "everything collected; saved with the policy.")
    clip_obs: float = _f(10.0, "Clip normalized observations to +-this.")
    normalize_reward: bool = _f(False, "Scale rewards by the running std of the discounted "
                                "return (clipped to +-10).")
    episodic_life: bool | None = _f(
        None, "Treat a lost life as an episode end in the returns (the game goes on); unset = "
        "on for Atari games.")
    clip_rewards: bool | None = _f(
        None, "Train on the sign of each reward (logs keep game scores); unset = on for Atari "
        "games.")

    # --- algorithm (DQN); shared fields above take DQN defaults from ALGO_DEFAULTS
    replay_size: int = _f(200_000, "DQN: replay capacity in transitions, summed over the "
                          "learners' shards (memory is allocated up front).")
    batch_size: int = _f(256, "DQN, PPO: minibatch per gradient update, summed over the "
                         "learners.")
    replay_ratio: float = _f(
        32.0, "DQN: samples trained on per env step collected (updates x --batch-size per "
        "step); held whatever the number of actors.")
    learning_starts: int = _f(1_000, "DQN: transitions in the replay before updates begin.")
    n_step: int = _f(3, "DQN: steps summed in the n-step return.")
    target_update: int = _f(100, "DQN: copy the online network to the target every this many "
                            "updates.")
    weights_every: int = _f(8, "DQN: send actors fresh weights every this many updates.")
    dueling: bool = _f(False, "DQN: dueling value/advantage heads.")
    prioritized: bool = _f(False, "DQN: proportional prioritized replay.")
    priority_alpha: float = _f(0.6, "DQN: priority exponent alpha of prioritized replay.")
    priority_beta: float = _f(
        0.4, "DQN: initial importance-weight exponent beta, annealed to 1 over the budget.")
    exploration: str = _f(
        "apex", "DQN: epsilon per acting rank i of N: apex = eps-base ** (1 + eps-alpha i/(N-1)) "
        "(Ape-X), linear = eps-final for all; both annealed from 1.0 over "
        "--exploration-fraction of the budget.", choices=("apex", "linear"))
    exploration_fraction: float = _f(0.1, "DQN: fraction of the budget over which epsilon "
                                     "anneals from 1.0 to its final value.")
    eps_final: float = _f(0.05, "DQN: final epsilon with --exploration linear.")
    eps_base: float = _f(0.4, "DQN: Ape-X base epsilon.")
    eps_alpha: float = _f(7.0, "DQN: Ape-X epsilon exponent spread.")
    checkpoint_replay: bool = _f(
        False, "DQN: include the replay shards in checkpoints (large), so a resumed run "
        "continues with its experience; else the replay refills after a resume.")

    # --- algorithm (A3C); the loss and its fields are A2C's
    servers: int = _f(1, "A3C: parameter-server ranks (the first ranks); the others are "
                      "workers. The weight vector is split evenly over the servers.")
    max_staleness: int = _f(
        0, "A3C: a server drops gradients computed from weights more than this many of its "
        "updates old (counted in progress.csv); 0 = apply every gradient.")

    # --- evaluation and logging
    eval_episodes: int = _f(10, "Deterministic episodes per evaluation.")
    eval_every: int = _f(10_000, "Evaluate every this many env steps; 0 = only at the end.")
    log_every: int = _f(10_000, "Write a progress row every this many env steps.")
    run_dir: str | None = _f(
        None, "Run directory; default runs/<algo>-<env>-<SLURM job id or time>.")
    tensorboard: bool = _f(True, "Write TensorBoard event files into the run directory.")
    quiet: bool = _f(False, "Do not print progress rows on the terminal.")
    timing: bool = _f(True, "Measure where each rank's time goes (cheap); --no-timing turns "
                      "it off, e.g. to measure its cost.")

    # --- checkpoints, resume and failure handling
    checkpoint_every: int = _f(0, "Write a checkpoint every this many updates; 0 = by time only.")
    checkpoint_minutes: float = _f(
        10.0, "Write a checkpoint every this many minutes of training; 0 = by updates only.")
    keep_checkpoints: int = _f(3, "How many of the newest checkpoints to keep.")
    resume: str | None = _f(
        None, "Continue the run in this run directory from its newest readable checkpoint.")
    auto_resume: bool = _f(
        False, "If the run directory (--run-dir, or the default name) holds a checkpoint, "
        "continue from it as --resume would; else start the run. For requeued batch jobs.")
    override: list[str] = _f(
        (), "With --resume: the config fields you mean to change from the saved run.")
    comm_timeout: float = _f(
        0.0, "Abort, naming who waits for what, when a rank waits on communication longer "
        "than this many seconds; 0 = wait forever.")
    nonfinite: str = _f("stop", "On a NaN or Inf loss or gradient: stop (keeping the last good "
                        "checkpoint), or skip that update and count it.", choices=("stop", "skip"))

    # --- config file
    config: str | None = _f(None, "YAML or TOML file with any of these fields; flags override it.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("config")
        d["hidden_sizes"] = list(d["hidden_sizes"])
        d["override"] = list(d["override"])
        return d

    # ------------------------------------------------------------------ validation
    def validate(self, world_size: int | None = None) -> None:
        """Raise ConfigError on the first invalid value. world_size checks the layout too."""
        positive = ["total_steps", "learners", "envs_per_actor", "n_steps", "eval_episodes",
                    "log_every"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{cli_flag(name)} must be positive, got {getattr(self, name)}")
        for name in ["torch_threads", "eval_every", "ent_coef", "vf_coef", "max_grad_norm",
                     "checkpoint_every", "checkpoint_minutes", "comm_timeout"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"--{cli_flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be at least 1, got {self.keep_checkpoints}")
        unknown = sorted(set(self.override) - set(field_types()))
        if unknown:
            raise ConfigError(f"--override names unknown field(s): {', '.join(unknown)}")
        if self.override and not (self.resume or self.auto_resume):
            raise ConfigError("--override only applies with --resume RUN_DIR or --auto-resume")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"--gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"--gae-lambda must be in [0, 1], got {self.gae_lambda}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.algo == "dqn":
            self._validate_dqn()
        if self.algo == "ppo":
            self._validate_ppo()
        if self.algo in ("dqn", "a3c") and (self.normalize_obs or self.normalize_reward):
            raise ConfigError(f"--normalize-obs and --normalize-reward apply to a2c and ppo, "
                              f"not --algo {self.algo}")
        if self.clip_obs <= 0:
            raise ConfigError(f"--clip-obs must be positive, got {self.clip_obs}")
        if self.algo == "a3c":
            if self.servers < 1:
                raise ConfigError(f"--servers must be at least 1, got {self.servers}")
            if self.max_staleness < 0:
                raise ConfigError(f"--max-staleness must be >= 0, got {self.max_staleness}")
            if self.device == "cuda":
                raise ConfigError("--algo a3c computes on the workers' CPUs (many small "
                                  "gradients); use --device cpu, or a2c/dqn for GPU learners")
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must be positive integers, got {self.hidden_sizes}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"--{cli_flag(f.name)} must be one of {', '.join(choices)}; "
                                  f"got {getattr(self, f.name)!r}")
        if world_size is not None:
            from mpirl.execution.layout import plan_for
            plan_for(self.algo, world_size, self.learners, self.servers)


    def _validate_ppo(self) -> None:
        for name in ["batch_size", "n_epochs", "clip_range"]:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{cli_flag(name)} must be positive, got {getattr(self, name)}")
        for name in ["clip_range_vf", "target_kl"]:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{cli_flag(name)} must be positive (or left unset), got "
                                  f"{value}")

    def _validate_dqn(self) -> None:
        for name in ["replay_size", "batch_size", "n_step", "target_update", "weights_every"]:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{cli_flag(name)} must be positive, got {getattr(self, name)}")
        if self.replay_ratio <= 0:
            raise ConfigError(f"--replay-ratio must be positive, got {self.replay_ratio}")
        if self.learning_starts < 0:
            raise ConfigError(f"--learning-starts must be >= 0, got {self.learning_starts}")
        if self.replay_size < self.batch_size:
            raise ConfigError(f"--replay-size {self.replay_size} is smaller than --batch-size "
                              f"{self.batch_size}: the replay must hold at least one batch")
        if self.batch_size < self.learners:
            raise ConfigError(f"--batch-size {self.batch_size} is less than one sample per "
                              f"learner (--learners {self.learners})")
        for name in ["exploration_fraction", "eps_final", "eps_base", "priority_beta"]:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{cli_flag(name)} must be in [0, 1], got "
                                  f"{getattr(self, name)}")
        if self.eps_alpha < 0 or self.priority_alpha < 0:
            raise ConfigError("--eps-alpha and --priority-alpha must be >= 0")


def cli_flag(name: str) -> str:
    """A field's command-line spelling, without the dashes in front: 'total-steps'."""
    return name.replace("_", "-")


def field_from_flag(text: str) -> str:
    """A field named on the command line, as 'total-steps' or 'total_steps'."""
    return text.replace("-", "_")


def field_types() -> dict[str, str]:
    """Every field's type, as written in the dataclass: {'total_steps': 'int', ...}."""
    return {f.name: str(f.type) for f in dataclasses.fields(Config)}


def coerce(name: str, value: Any) -> Any:
    """Turn a value from a config file into the field's type, with a clear error if it can't."""
    kind = field_types()[name]
    try:
        if value is None:
            if "None" in kind:
                return None
            raise TypeError
        if kind.startswith("list"):
            item = str if "str" in kind else int
            if isinstance(value, (str, int)):
                value = [value] if isinstance(value, int) else value.split(",")
            return [item(v) for v in value]
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{name}' has value {value!r}, expected {kind}") from None


# Where an algorithm's good defaults differ from the dataclass's (which are A2C's). A value
# given on the command line or in a config file always wins.
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    # the tuned CartPole settings of rl-baselines3-zoo, per acting rank, with the clip range
    # halved: with several acting ranks an iteration takes (batch / batch_size) x n_epochs
    # minibatch steps from one rollout, and 0.1 keeps the policy from overshooting once it
    # balances (4 ranks, seeds 0-27: 2 runs fell back below 475 after reaching it, against 10
    # with 0.2, and the first 475 came as early)
    "ppo": {"total_steps": 100_000, "envs_per_actor": 8, "n_steps": 32, "batch_size": 256,
            "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8, "optimizer": "adam",
            "lr": 1e-3, "lr_schedule": "linear", "clip_range": 0.1, "clip_schedule": "linear",
            "eval_every": 5_000, "log_every": 5_000},
    "dqn": {"total_steps": 200_000, "envs_per_actor": 4, "n_steps": 16, "optimizer": "adam",
            "lr": 1e-3, "lr_schedule": "linear", "hidden_sizes": [128, 128],
            "activation": "relu", "max_grad_norm": 10.0, "eval_every": 5_000,
            "log_every": 5_000},
}
