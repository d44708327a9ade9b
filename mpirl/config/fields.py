"""Declaring configuration options, and the error bad input raises. Imports nothing of mpirl, so
every module may declare options or raise ConfigError.

Options come in groups: a dataclass whose docstring's first line is the group's title in
``--help`` and whose fields are declared with ``option``. A group may define a static
``validate(cfg)`` that raises ConfigError; it runs when the chosen algorithm uses the group.
Every field becomes a flag (``--clip-range``) and a config-file key (``clip_range`` or
``clip-range``)::

    @dataclass
    class PPOOptions:
        \"\"\"PPO\"\"\"
        n_epochs: int = option(10, "Passes over each rollout batch.")
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence


class ConfigError(ValueError):
    """Invalid user input: reported once, and every rank exits with code 2."""


def option(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    """A config field: its default (a tuple for list fields), its one-line help and, for
    strings, the values it may take."""
    return dataclasses.field(default=default,
                             metadata={"help": help,
                                       "choices": tuple(choices) if choices else None})


@dataclass(frozen=True)
class OptionInfo:
    """One field of an option group, as the parser, config files and validation see it."""

    name: str
    type: str          # as written in the group, e.g. "int", "float | None", "list[int]"
    default: Any
    help: str
    choices: tuple[str, ...] | None
    group: type


def options_of(group: type) -> list[OptionInfo]:
    """The fields of an option group, in declaration order."""
    return [OptionInfo(f.name, str(f.type), f.default, f.metadata.get("help", ""),
                       f.metadata.get("choices"), group)
            for f in dataclasses.fields(group)]


def group_title(group: type) -> str:
    """The first line of the group's docstring."""
    return (group.__doc__ or group.__name__).strip().splitlines()[0]


def cli_flag(name: str) -> str:
    """A field's command-line spelling, without the dashes in front: 'total-steps'."""
    return name.replace("_", "-")


def field_from_flag(text: str) -> str:
    """A field named on the command line, as 'total-steps' or 'total_steps'."""
    return text.replace("-", "_")


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value > 0, f"--{cli_flag(name)} must be positive, got {value}")


def non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value >= 0, f"--{cli_flag(name)} must be >= 0, got {value}")


def in_unit_interval(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(0.0 <= value <= 1.0, f"--{cli_flag(name)} must be in [0, 1], got {value}")
