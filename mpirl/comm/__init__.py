"""MPI communication for mpirl: role layout, quiet waits, buffers, gradient averaging.

This package is the only place that imports mpi4py.
"""
from mpirl.comm.core import (RoleComms, abort, allreduce_sum_, barrier, broadcast_,
                             broadcast_object, first_error, gather_objects, node_local,
                             processor_name, recv_all, send, split_roles, wait, world)
from mpirl.comm.gradsync import (GradientAverager, broadcast_parameters, numpy_to_parameters,
                                 parameters_to_numpy)
from mpirl.layout import Layout, plan_layout

__all__ = [
    "GradientAverager", "Layout", "RoleComms", "abort", "allreduce_sum_", "barrier",
    "broadcast_", "broadcast_object", "broadcast_parameters", "first_error", "gather_objects",
    "node_local", "numpy_to_parameters", "parameters_to_numpy", "plan_layout", "processor_name",
    "recv_all", "send", "split_roles", "wait", "world",
]
