"""The algorithms a run can choose (``--algo``), each registered once.

The built-in algorithms are the packages ``mpirl.algos.<name>`` for the names in ``BUILTIN``;
each registers itself when imported. Your own algorithm registers itself the same way, from a
module that mpirl imports at start-up because you named it:

- in the environment variable ``MPIRL_PLUGINS`` (module names, separated by commas), e.g.
  ``MPIRL_PLUGINS=mylab.algos.reinforce mpirun -n 4 python -m mpirl.train --algo reinforce``
  (launchers pass the variable on to every rank; with Open MPI add ``-x MPIRL_PLUGINS``), or
- as an entry point of an installed package, in the group ``mpirl.algorithms``::

      [project.entry-points."mpirl.algorithms"]
      reinforce = "mylab.algos.reinforce"

Nothing else in mpirl knows the algorithms by name.
"""
from __future__ import annotations

import importlib
import os
from importlib import metadata

from mpirl.algos.api import Algorithm
from mpirl.config.fields import ConfigError

# the built-in algorithms, in the order --help lists them: the package mpirl.algos.<name> of
# each registers it
BUILTIN = ("a2c", "ppo", "dqn", "sac", "td3", "d4pg", "a3c", "impala", "r2d2")
PLUGINS_VAR = "MPIRL_PLUGINS"
ENTRY_POINTS = "mpirl.algorithms"

_registered: dict[str, Algorithm] = {}
_loaded = False
_version = 0  # changes with every registration (caches of the config schema follow it)


def register(algorithm: Algorithm) -> Algorithm:
    """Make ``algorithm`` available as ``--algo NAME``; returns it. Registering the same
    declaration again is harmless; another one under a taken name is an error."""
    global _version
    known = _registered.get(algorithm.name)
    if known is not None and known is not algorithm:
        raise ValueError(f"an algorithm named {algorithm.name!r} is already registered")
    _registered[algorithm.name] = algorithm
    _version += 1
    return algorithm


def version() -> int:
    _load()
    return _version


def _import(module: str, where: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as e:  # a plug-in that cannot load is bad input, reported as such
        raise ConfigError(f"{where} names module '{module}', which cannot be imported: "
                          f"{type(e).__name__}: {e}") from None


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN:
        importlib.import_module(f"mpirl.algos.{name}")
    for module in os.environ.get(PLUGINS_VAR, "").replace(",", " ").split():
        _import(module, f"{PLUGINS_VAR}")
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        _import(entry.value.partition(":")[0],
                f"the entry point '{entry.name}' of group {ENTRY_POINTS}")


def algorithms() -> dict[str, Algorithm]:
    """Every registered algorithm by name: the built-in ones in their order, then the others
    in the order they registered."""
    _load()
    order = [n for n in BUILTIN if n in _registered] + \
        [n for n in _registered if n not in BUILTIN]
    return {name: _registered[name] for name in order}


def get(name: str) -> Algorithm:
    """The algorithm registered as ``name``; ConfigError if there is none."""
    known = algorithms()
    if name not in known:
        raise ConfigError(f"unknown algorithm '{name}' (registered: {', '.join(known)}); an "
                          f"algorithm of your own must be imported at start-up: name its "
                          f"module in {PLUGINS_VAR}")
    return known[name]
