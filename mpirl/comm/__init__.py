"""MPI communication for mpirl: role layout, quiet waits, buffers, gradient averaging.

This package is the only place that imports mpi4py.
"""
from mpirl.comm.core import (HANDOFF_SLEEP_S, RoleComms, abort, allreduce_sum_, barrier, broadcast_,
                             broadcast_object, first_error, gather_objects, node_local,
                             irecv_all, isend_all, processor_name, raw_allreduce_sum_, recv, send, split_roles, wait, world)
from mpirl.comm.gradsync import FlatParameters, GradientAverager, broadcast_parameters
from mpirl.layout import Layout, plan_layout

__all__ = [
    "HANDOFF_SLEEP_S",
    "FlatParameters", "GradientAverager", "Layout", "RoleComms", "abort", "allreduce_sum_", "barrier",
    "broadcast_", "broadcast_object", "broadcast_parameters", "first_error", "gather_objects",
    "node_local", "plan_layout", "processor_name", "raw_allreduce_sum_",
    "irecv_all", "isend_all", "recv", "send", "split_roles", "wait", "world",
]
