"""The one run configuration: a dataclass whose every field is a CLI flag and a config-file key.

Precedence: defaults < ``--config FILE`` (YAML or TOML) < flags given on the command line.
``validate`` checks everything that does not need MPI, so bad input fails before any traffic.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml


class ConfigError(ValueError):
    """Invalid user input: reported once, and every rank exits with code 2."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


ALGOS = ("a2c",)
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
    torch_threads: int = _f(
        0, "Torch threads per rank; 0 = SLURM_CPUS_PER_TASK, else this node's cores / ranks.")

    # --- algorithm (A2C)
    n_steps: int = _f(5, "Steps each env collects per update (the rollout length).")
    gamma: float = _f(0.99, "Discount factor.")
    gae_lambda: float = _f(1.0, "GAE lambda; 1.0 gives plain n-step returns.")
    ent_coef: float = _f(0.0, "Entropy bonus weight.")
    vf_coef: float = _f(0.5, "Value loss weight.")
    max_grad_norm: float = _f(0.5, "Clip the averaged gradient to this global norm; 0 disables.")
    optimizer: str = _f("rmsprop", "Optimizer.", choices=OPTIMIZERS)
    lr: float = _f(2e-3, "Learning rate.")
    lr_schedule: str = _f("linear", "Learning-rate schedule over the budget.",
                          choices=("constant", "linear"))
    hidden_sizes: list[int] = _f((64, 64), "Hidden layer sizes of the policy and value MLPs.")
    activation: str = _f("tanh", "Hidden activation.", choices=("tanh", "relu"))

    # --- evaluation and logging
    eval_episodes: int = _f(10, "Deterministic episodes per evaluation.")
    eval_every: int = _f(10_000, "Evaluate every this many env steps; 0 = only at the end.")
    log_every: int = _f(10_000, "Write a progress row every this many env steps.")
    run_dir: str | None = _f(
        None, "Run directory; default runs/<algo>-<env>-<SLURM job id or time>.")
    tensorboard: bool = _f(True, "Write TensorBoard event files into the run directory.")
    quiet: bool = _f(False, "Do not print progress rows on the terminal.")

    # --- config file
    config: str | None = _f(None, "YAML or TOML file with any of these fields; flags override it.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("config")
        d["hidden_sizes"] = list(d["hidden_sizes"])
        return d

    # ------------------------------------------------------------------ validation
    def validate(self, world_size: int | None = None) -> None:
        """Raise ConfigError on the first invalid value. world_size checks the layout too."""
        positive = ["total_steps", "learners", "envs_per_actor", "n_steps", "eval_episodes",
                    "log_every"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{_flag(name)} must be positive, got {getattr(self, name)}")
        for name in ["torch_threads", "eval_every", "ent_coef", "vf_coef", "max_grad_norm"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"--gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"--gae-lambda must be in [0, 1], got {self.gae_lambda}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f"--hidden-sizes must be positive integers, got {self.hidden_sizes}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"--{_flag(f.name)} must be one of {', '.join(choices)}; "
                                  f"got {getattr(self, f.name)!r}")
        if world_size is not None:
            from mpirl.layout import plan_layout
            plan_layout(world_size, self.learners)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a value from a config file into the field's type, with a clear error if it can't."""
    kind = _field_types()[name]
    try:
        if value is None:
            if "None" in kind:
                return None
            raise TypeError
        if kind.startswith("list"):
            if isinstance(value, (str, int)):
                value = [value] if isinstance(value, int) else value.split(",")
            return [int(v) for v in value]
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


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or TOML config file into a dict of known, type-checked fields."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        if p.suffix == ".toml":
            raw = tomllib.loads(p.read_text())
        else:
            raw = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot parse config file {p}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping of field: value")
    known = set(_field_types()) - {"config"}
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown key '{key}' in config file {p} "
                              f"(valid keys: {', '.join(sorted(known))})")
        out[name] = _coerce(name, value)
    return out


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # raise instead of exit, so MPI ranks agree first
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="python -m mpirl.train",
                             description="Train an RL agent on MPI ranks (run under mpirun/srun).",
                             argument_default=argparse.SUPPRESS)
    for f in dataclasses.fields(Config):
        kind = str(f.type)
        flag = "--" + _flag(f.name)
        help_ = f.metadata["help"]
        choices = f.metadata.get("choices")
        if kind.startswith("bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_)
        elif kind.startswith("list"):
            parser.add_argument(flag, type=int, nargs="+", help=help_)
        elif kind.startswith("int"):
            parser.add_argument(flag, type=int, help=help_)
        elif kind.startswith("float"):
            parser.add_argument(flag, type=float, help=help_)
        else:
            parser.add_argument(flag, type=str, choices=choices, help=help_)
    return parser


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Defaults, then the --config file, then the flags. Raises ConfigError on bad input."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    if args.get("config"):
        values.update(load_config_file(args["config"]))
    values.update(args)
    cfg = Config(**values)
    cfg.hidden_sizes = list(cfg.hidden_sizes)
    cfg.validate()
    return cfg


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from a saved config.yaml mapping."""
    known = set(_field_types())
    cfg = Config(**{k: _coerce(k, v) for k, v in d.items() if k in known})
    return cfg
