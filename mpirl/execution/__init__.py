"""Execution models: which rank plays which role and the loops each role runs."""
