"""Where a run's configuration comes from: defaults (the chosen algorithm's where it has its
own) < ``--config FILE`` (YAML or TOML, or a preset shipped in ``mpirl/presets``) < flags given
on the command line; on ``--resume``, the saved config, with the changes the user may make.

The user may set only fields the chosen algorithm reads: ``--clip-range`` with ``--algo dqn``
is refused, naming the algorithms it belongs to.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mpirl import __version__
from mpirl.algos import registry
from mpirl.config.fields import ConfigError, OptionInfo, cli_flag, field_from_flag, group_title
from mpirl.config.general import GeneralOptions
from mpirl.config.schema import (Config, algorithm_defaults, coerce, field_types, option_groups,
                                 owners_text, schema, unused_fields)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

PRESETS = Path(__file__).resolve().parent.parent / "presets"
# values that set up a run rather than configure it: never refused as another algorithm's
_ANY_ALGORITHM = frozenset({"config", "resume", "auto_resume", "override"})


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
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {p}: not a text file (YAML or TOML)") \
            from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping of field: value")
    return _known_fields(raw, lambda key, valid: f"unknown key '{key}' in config file {p} "
                         f"(valid keys: {valid})")


def _known_fields(values: Mapping[str, Any], unknown, config: bool = False) -> dict[str, Any]:
    """``values`` keyed by field name, each converted to its field's type (``coerce``); a key
    that names no field raises ConfigError(``unknown(key, the valid names)``). ``config``: the
    ``config`` field is one of them."""
    known = set(field_types()) - (set() if config else {"config"})
    out = {}
    for key, value in values.items():
        name = field_from_flag(str(key))
        if name not in known:
            raise ConfigError(unknown(key, ", ".join(sorted(known - {"config"}))))
        out[name] = coerce(name, value)
    return out


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # raise instead of exit, so MPI ranks agree first
        raise ConfigError(message)


def _add(parser, f: OptionInfo, algorithms: list[str]) -> None:
    kind, flag = f.type, "--" + cli_flag(f.name)
    help_ = f.help
    if f.name == "algo":
        known = registry.algorithms()
        help_ += " " + "; ".join(f"{name}: {a.description}" for name, a in known.items()) + "."
        choices = list(known)
    else:
        choices = f.choices
    others = [f"{name}: {registry.get(name).defaults[f.name]}" for name in algorithms
              if f.name in registry.get(name).defaults]
    if others:
        help_ += f" (default {f.default}; {', '.join(others)})"
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


def build_parser() -> argparse.ArgumentParser:
    """``python -m mpirl.train``'s flags: the general ones, then one section per option group,
    titled with the algorithms that read it."""
    parser = _ArgumentParser(prog="python -m mpirl.train",
                             description="Train an RL agent on MPI ranks (run under mpirun/srun).",
                             argument_default=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"mpirl {__version__}")
    fields = schema()
    every = list(registry.algorithms())
    general = parser.add_argument_group(group_title(GeneralOptions))
    for f in fields.values():
        if f.group is GeneralOptions:
            _add(general, f, every)
    for group, algorithms in option_groups():
        section = parser.add_argument_group(f"{group_title(group)} ({', '.join(algorithms)})")
        for f in fields.values():
            if f.group is group:
                _add(section, f, algorithms)
    return parser


def _refuse_unused(algo: str, values: dict[str, Any], where: str | None = None) -> None:
    """ConfigError if ``values`` set a field the algorithm does not read."""
    if algo not in registry.algorithms():
        return  # validation reports the unknown algorithm
    for name, owners in unused_fields(algo, [n for n in values if n not in _ANY_ALGORITHM]):
        what = f"key '{name}' in config file {where}" if where else f"--{cli_flag(name)}"
        raise ConfigError(f"{what} is an option of {owners_text(owners)}, not of --algo "
                          f"{algo}")


def _read(argv: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(the --config file's values, the flags given, the file's path)."""
    flags = vars(build_parser().parse_args(argv))
    if not flags.get("config"):
        return {}, flags, None
    return load_config_file(flags["config"]), flags, str(resolve_config_path(flags["config"]))


def values_given_in_code(values: Mapping[str, Any]) -> dict[str, Any]:
    """Field values given in code (the Python API), checked and converted as a config file's;
    a ``config`` among them is read first and the other values override it."""
    out = _known_fields(values, lambda key, valid: f"unknown config field '{key}' (valid "
                        f"fields: {valid})", config=True)
    if out.get("config"):
        out = {**load_config_file(out["config"]), **out}
    return out


def config_from_values(given: dict[str, Any]) -> Config:
    """The config of ``values_given_in_code``: defaults, then the values, with the checks of
    ``parse_config``."""
    if not (given.get("resume") or given.get("auto_resume")):
        _refuse_unused(given.get("algo", GeneralOptions.algo), given)
    return _build(given)


def given_values(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The values the user set: the --config file's, then the flags given (no defaults)."""
    from_file, flags, _ = _read(argv)
    return {**from_file, **flags}


def refuse_other_algorithms(argv: Sequence[str] | None = None) -> None:
    """ConfigError if the file or the flags set a field the chosen algorithm does not read.
    (A resumed run's algorithm is the saved one: ``resumed_config`` checks against it.)"""
    _refuse_given(*_read(argv))


def _refuse_given(from_file: dict[str, Any], flags: dict[str, Any], path: str | None) -> None:
    algo = flags.get("algo", from_file.get("algo", GeneralOptions.algo))
    _refuse_unused(algo, from_file, path)
    _refuse_unused(algo, flags)


def _build(values: dict[str, Any]) -> Config:
    values = {**algorithm_defaults(values.get("algo", GeneralOptions.algo)), **values}
    cfg = Config(**values)
    cfg.validate()
    return cfg


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Defaults, then the --config file, then the flags. Raises ConfigError on bad input,
    and, for a new run (no --resume or --auto-resume), on a field the chosen algorithm does
    not read."""
    from_file, flags, path = _read(argv)
    values = {**from_file, **flags}
    if not (values.get("resume") or values.get("auto_resume")):
        _refuse_given(from_file, flags, path)
    return _build(values)


# Fields that change how a run executes or reports, not what it computes: a resumed run may
# set them freely. ``learners`` and ``servers`` re-lay the ranks out; ``device``, ``precision``
# and ``autograd`` change only rounding (weights and optimizer state are float32 either way).
RESUME_FREE = frozenset({"resume", "auto_resume", "override", "config", "run_dir", "quiet",
                         "tensorboard", "torch_threads", "device", "precision", "autograd",
                         "learners", "servers", "comm_timeout", "checkpoint_every",
                         "checkpoint_minutes", "keep_checkpoints", "nonfinite", "timing"})


def resumed_config(saved: dict[str, Any], given: dict[str, Any]) -> Config:
    """The config of a resumed run: the saved one, with the given values that are free to
    change or named in ``given['override']``. Any other difference is a ConfigError."""
    base = config_from_dict(saved).to_dict()
    _refuse_unused(base["algo"], given)
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
    """Rebuild a Config from a saved config.yaml mapping. Fields no registered algorithm
    declares (a plug-in's, when it is not loaded) are left out."""
    known = set(field_types())
    return Config(**{k: coerce(k, v) for k, v in d.items() if k in known})
