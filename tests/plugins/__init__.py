"""Algorithms registered from outside mpirl, as a user's would be (MPIRL_PLUGINS)."""
