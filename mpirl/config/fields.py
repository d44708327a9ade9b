"""Declaring configuration options, and the error bad input raises. Imports nothing of mpirl, so
every module may declare options or raise ConfigError.

Options come in groups: a dataclass whose docstring's first line is the group's title in
``--help`` and whose fields are declared with ``option``. A group may define a static
``validate(cfg)`` that raises ConfigError; it runs when the chosen algorithm uses the group.
Every field becomes a flag (``--clip-range``) and a config-file key (``clip_range`` or
``clip-range``). A number declares the interval it must lie in; every number, whatever its
interval, must be finite (``check_number``, run on every field of the chosen algorithm before
any group's own ``validate``)::

    @dataclass
    class PPOOptions:
        \"\"\"PPO\"\"\"
        n_epochs: int = option(10, "Passes over each rollout batch.", bounds="[1, inf)")
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence


class ConfigError(ValueError):
    """Invalid user input: reported once, and every rank exits with code 2."""


@dataclass(frozen=True)
class Interval:
    """The values a number may take, written as in mathematics: ``"(0, 1]"``, ``"[0, inf)"``.
    Infinite ends are always open: no option accepts an infinite value."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    @classmethod
    def parse(cls, text: str) -> "Interval":
        try:
            low, high = (float(part) for part in text[1:-1].split(","))
            if text[0] not in "([" or text[-1] not in ")]" or not low < high:
                raise ValueError
        except ValueError:
            raise ValueError(f"not an interval: {text!r} (write e.g. '(0, 1]')") from None
        return cls(low, high, text[0] == "[" and math.isfinite(low),
                   text[-1] == "]" and math.isfinite(high))

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def describe(self, integer: bool) -> str:
        """'positive', '>= 0', 'at least 2', 'a finite number', 'in (0, 1]'."""
        if math.isinf(self.high):
            if math.isinf(self.low):
                return "a finite number"
            if self.low == 0:
                return ">= 0" if self.low_closed else "positive"
            if integer and self.low_closed:
                return "positive" if self.low == 1 else f"at least {self.low:g}"
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


ANY = Interval(-math.inf, math.inf, False, False)


def option(default: Any, help: str, choices: Sequence[str] | None = None,
           bounds: str | None = None) -> Any:
    """A config field: its default (a tuple for list fields), its one-line help, for strings
    the values it may take, and for numbers the interval they must lie in (``bounds``, e.g.
    ``"(0, 1]"``; unset = any finite number)."""
    return dataclasses.field(default=default,
                             metadata={"help": help,
                                       "choices": tuple(choices) if choices else None,
                                       "bounds": Interval.parse(bounds) if bounds else None})


@dataclass(frozen=True)
class OptionInfo:
    """One field of an option group, as the parser, config files and validation see it."""

    name: str
    type: str          # as written in the group, e.g. "int", "float | None", "list[int]"
    default: Any
    help: str
    choices: tuple[str, ...] | None
    group: type
    bounds: Interval | None = None

    @property
    def numeric(self) -> bool:
        return self.type.startswith(("int", "float"))


def options_of(group: type) -> list[OptionInfo]:
    """The fields of an option group, in declaration order."""
    return [OptionInfo(f.name, str(f.type), f.default, f.metadata.get("help", ""),
                       f.metadata.get("choices"), group, f.metadata.get("bounds"))
            for f in dataclasses.fields(group)]


# The largest integer an option may hold: integers travel as int64 (counters, seeds, sizes).
INT_LIMIT = 2 ** 62


def check_number(info: OptionInfo, value: Any) -> None:
    """Raise ConfigError unless ``value`` (not None) is a finite number in the option's
    interval. NaN fails every comparison, so a range check alone would let it through."""
    flag = f"--{cli_flag(info.name)}"
    integer = info.type.startswith("int")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        raise ConfigError(f"{flag} must be {'an integer' if integer else 'a number'}, "
                          f"got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{flag} must be a finite number, got {value}")
    if integer and abs(value) > INT_LIMIT:
        raise ConfigError(f"{flag} is too large: {value}")
    interval = info.bounds or ANY
    if value not in interval:
        raise ConfigError(f"{flag} must be {interval.describe(integer)}, got {value}")


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
