"""Test helpers live in ``tests/helpers.py``; whole jobs run with ``tests/`` on PYTHONPATH,
so they can load the envs of ``envs_for_tests`` and the algorithms of ``plugins``."""
