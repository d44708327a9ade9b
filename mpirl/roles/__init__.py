"""Roles own the loops: actors step envs, learners train; algorithms plug into them."""
