"""The one run configuration: every field is a CLI flag and a config-file key.

The fields are the general options (``mpirl.config.general``) plus the option groups of every
registered algorithm and of the execution models they run on (``mpirl.algos``). A ``Config``
holds a value for each of them, so a saved run lists them all; an algorithm reads only its own
groups, and the user may only set fields of the chosen algorithm (``unused_fields``).

``Config.validate`` checks everything that does not need MPI, so bad input fails before any
traffic.
"""
from __future__ import annotations

import json
from typing import Any

from mpirl.algos import registry
from mpirl.config.fields import ConfigError, OptionInfo, check_number, cli_flag, options_of
from mpirl.config.general import GeneralOptions

_cache: tuple[int, dict[str, OptionInfo], list[tuple[type, list[str]]]] | None = None


def _build() -> tuple[dict[str, OptionInfo], list[tuple[type, list[str]]]]:
    global _cache
    version = registry.version()
    if _cache is None or _cache[0] != version:
        fields = {f.name: f for f in options_of(GeneralOptions)}
        groups: dict[type, list[str]] = {}
        for name, algorithm in registry.algorithms().items():
            for group in algorithm_groups(algorithm):
                groups.setdefault(group, []).append(name)
                for f in options_of(group):
                    other = fields.get(f.name)
                    if other is not None and other.group is not group:
                        raise ConfigError(f"--algo {name} declares the option '{f.name}' "
                                          f"({group.__name__}), which "
                                          f"{other.group.__name__} declares already: give "
                                          f"it another name")
                    fields[f.name] = f
        _cache = (version, fields, list(groups.items()))
    return _cache[1], _cache[2]


def algorithm_groups(algorithm) -> list[type]:
    """The option groups an algorithm reads besides the general ones: its own, then its
    execution model's."""
    return [*algorithm.options, *algorithm.execution.options]


def schema() -> dict[str, OptionInfo]:
    """Every field by name: the general ones first, then each group's."""
    return _build()[0]


def option_groups() -> list[tuple[type, list[str]]]:
    """Each option group beyond the general one, with the algorithms that read it."""
    return _build()[1]


def field_types() -> dict[str, str]:
    """Every field's type, as declared: {'total_steps': 'int', ...}."""
    return {name: f.type for name, f in schema().items()}


def fields_of(algorithm_name: str) -> set[str]:
    """The fields an algorithm reads: the general ones and those of its groups."""
    names = {f.name for f in options_of(GeneralOptions)}
    for group in algorithm_groups(registry.get(algorithm_name)):
        names.update(f.name for f in options_of(group))
    return names


def unused_fields(algorithm_name: str, names) -> list[tuple[str, list[str]]]:
    """Of ``names``, those the algorithm does not read, each with the algorithms that do."""
    used = fields_of(algorithm_name)
    out = []
    for name in names:
        if name in used or name not in schema():
            continue
        owners = [a for group, algos in option_groups()
                  if name in {f.name for f in options_of(group)} for a in algos]
        out.append((name, owners))
    return out


def owners_text(owners: list[str]) -> str:
    return owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"


class Config:
    """Everything that defines a training run: one attribute per field of ``schema()``."""

    def __init__(self, **values: Any):
        fields = schema()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(f"unknown config field(s): {', '.join(unknown)}")
        for name, f in fields.items():
            value = values.get(name, f.default)
            if f.type.startswith("list") and value is not None:
                value = list(value)
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``config``, as saved in config.yaml."""
        return {name: (list(getattr(self, name)) if f.type.startswith("list")
                       else getattr(self, name))
                for name, f in schema().items() if name != "config"}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict() and \
            self.config == other.config

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    @property
    def algorithm(self):
        """The registered algorithm this config chooses (``mpirl.algos.api.Algorithm``)."""
        return registry.get(self.algo)

    # ------------------------------------------------------------------ validation
    def validate(self, world_size: int | None = None) -> None:
        """Raise ConfigError on the first invalid value. world_size checks the layout too."""
        known = registry.algorithms()
        if self.algo not in known:
            raise ConfigError(f"--algo must be one of {', '.join(known)}; got {self.algo!r}")
        algorithm = known[self.algo]
        unknown = sorted(set(self.override) - set(schema()))
        if unknown:
            raise ConfigError(f"--override names unknown field(s): {', '.join(unknown)}")
        used = fields_of(self.algo)
        for name, info in schema().items():
            if name in used and info.numeric and getattr(self, name) is not None:
                check_number(info, getattr(self, name))
        GeneralOptions.validate(self)
        for group in algorithm_groups(algorithm):
            check = getattr(group, "validate", None)
            if check is not None:
                check(self)
        algorithm.validate(self)
        for name, f in schema().items():
            if f.choices and getattr(self, name) not in f.choices:
                raise ConfigError(f"--{cli_flag(name)} must be one of {', '.join(f.choices)}; "
                                  f"got {getattr(self, name)!r}")
        if world_size is not None:
            algorithm.execution.plan(self, world_size)


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
        if name == "env_kwargs" and isinstance(value, dict):  # a mapping in a config file
            return json.dumps(value, sort_keys=True)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{name}' has value {value!r}, expected {kind}") from None


def algorithm_defaults(algo: str) -> dict[str, Any]:
    """The chosen algorithm's defaults (none for a name not registered: validation says so)."""
    known = registry.algorithms()
    return dict(known[algo].defaults) if algo in known else {}
