"""Declaring configuration options, and the error bad input raises. Imports nothing of mpirl, so
every module may declare options or raise ConfigError."""
from __future__ import annotations


class ConfigError(ValueError):
    """Invalid user input: reported once, and every rank exits with code 2."""
