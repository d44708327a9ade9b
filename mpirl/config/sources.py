"""Where a run's configuration comes from: defaults < ``--config FILE`` (YAML or TOML, or a
preset shipped in ``mpirl/presets``) < flags given on the command line; on ``--resume``, the
saved config, with the changes the user may make.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from mpirl.config.fields import ConfigError
from mpirl.config.schema import ALGO_DEFAULTS, Config, cli_flag, coerce, field_from_flag, field_types

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

PRESETS = Path(__file__).resolve().parent.parent / "presets"


def resolve_config_path(path: str | os.PathLike) -> Path:
    """``path`` if it is a file; else, for ``presets/NAME`` or a bare ``NAME``, the preset of
    that name shipped with mpirl (``.yaml`` may be left off)."""
    p = Path(path)
    if p.is_file():
        return p
    if len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "presets"):
        for name in (p.name, p.name + ".yaml"):
            if (PRESETS / name).is_file():
                return PRESETS / name
    known = ", ".join(sorted(q.name for q in PRESETS.glob("*.yaml")))
    raise ConfigError(f"config file not found: {p} (presets shipped with mpirl: {known})")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or TOML config file into a dict of known, type-checked fields."""
    p = resolve_config_path(path)
    try:
        if p.suffix == ".toml":
            raw = tomllib.loads(p.read_text())
        else:
            raw = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot parse config file {p}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping of field: value")
    known = set(field_types()) - {"config"}
    out = {}
    for key, value in raw.items():
        name = field_from_flag(str(key))
        if name not in known:
            raise ConfigError(f"unknown key '{key}' in config file {p} "
                              f"(valid keys: {', '.join(sorted(known))})")
        out[name] = coerce(name, value)
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
        flag = "--" + cli_flag(f.name)
        help_ = f.metadata["help"]
        others = [f"{algo}: {d[f.name]}" for algo, d in ALGO_DEFAULTS.items() if f.name in d]
        if others:
            help_ += f" (default {f.default}; {', '.join(others)})"
        choices = f.metadata.get("choices")
        if kind.startswith("bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_)
        elif kind.startswith("list"):
            item = field_from_flag if "str" in kind else int
            parser.add_argument(flag, type=item, nargs="+", help=help_)
        elif kind.startswith("int"):
            parser.add_argument(flag, type=int, help=help_)
        elif kind.startswith("float"):
            parser.add_argument(flag, type=float, help=help_)
        else:
            parser.add_argument(flag, type=str, choices=choices, help=help_)
    return parser


def given_values(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The values the user set: the --config file's, then the flags given (no defaults)."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    if args.get("config"):
        values.update(load_config_file(args["config"]))
    values.update(args)
    return values


def _build(values: dict[str, Any]) -> Config:
    values = {**ALGO_DEFAULTS.get(values.get("algo", "a2c"), {}), **values}
    cfg = Config(**values)
    cfg.hidden_sizes = list(cfg.hidden_sizes)
    cfg.override = list(cfg.override)
    cfg.validate()
    return cfg


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Defaults, then the --config file, then the flags. Raises ConfigError on bad input."""
    return _build(given_values(argv))


# Fields that change how a run executes or reports, not what it computes: a resumed run may
# set them freely. ``learners`` re-lays the ranks out; ``device`` and ``precision`` change only
# rounding (weights and optimizer state are float32 either way).
RESUME_FREE = frozenset({"resume", "auto_resume", "override", "config", "run_dir", "quiet",
                         "tensorboard", "torch_threads", "device", "precision", "learners",
                         "servers", "comm_timeout", "checkpoint_every", "checkpoint_minutes",
                         "keep_checkpoints", "nonfinite", "timing"})


def resumed_config(saved: dict[str, Any], given: dict[str, Any]) -> Config:
    """The config of a resumed run: the saved one, with the given values that are free to
    change or named in ``given['override']``. Any other difference is a ConfigError."""
    base = config_from_dict(saved).to_dict()
    override = set(given.get("override", ()))
    changed = []
    for name, value in given.items():
        if name in RESUME_FREE or name in override or name not in base:
            continue
        if coerce(name, value) != base[name]:
            changed.append(f"--{cli_flag(name)} {value!r} (the run has {base[name]!r})")
    if changed:
        names = " ".join(c.split()[0][2:] for c in changed)
        raise ConfigError("the resumed run's config differs from the saved one: "
                          + "; ".join(changed)
                          + f". To change it on purpose, add --override {names}")
    base.update({k: v for k, v in given.items() if k != "config"})
    return _build(base)


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from a saved config.yaml mapping."""
    known = set(field_types())
    cfg = Config(**{k: coerce(k, v) for k, v in d.items() if k in known})
    return cfg
