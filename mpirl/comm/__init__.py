"""MPI communication for mpirl: quiet waits, point-to-point buffers, collectives, flat
parameters and gradient averaging.

This package is the only place that imports mpi4py. Flat parameters and gradient averaging
(``gradsync``) need torch and load on first use: an actor that acts in numpy never imports it.
"""
from mpirl.comm.core import (HANDOFF_SLEEP_S, ON_DATA, ON_FINISH, ON_LEAD, ON_PEERS, STOP_GRACE_S,
                             CommTimeout, RoleComms, abort, allgather_, allreduce_sum_,
                             announce_arrival, barrier, broadcast_, broadcast_object, first_error,
                             gather_objects, gather_to_root, irecv, irecv_all, irecv_arrived,
                             isend, isend_all, issend, node_local, overdue, poll_until,
                             raw_allreduce_sum_, recv, rendezvous, scatter_objects, send,
                             set_comm_timeout, split_roles, test, wait, wait_any, world)
from mpirl.execution.layout import Layout, plan_layout

__all__ = [
    "HANDOFF_SLEEP_S", "ON_DATA", "ON_FINISH", "ON_LEAD", "ON_PEERS", "STOP_GRACE_S",
    "CommTimeout",
    "FlatParameters", "GradientAverager", "Layout",
    "RoleComms", "abort", "allgather_", "allreduce_sum_", "announce_arrival", "barrier",
    "broadcast_", "broadcast_object", "broadcast_parameters", "first_error", "gather_objects",
    "gather_to_root", "irecv", "irecv_all", "irecv_arrived", "isend", "isend_all", "issend",
    "node_local", "overdue", "plan_layout", "poll_until",
    "raw_allreduce_sum_", "recv", "rendezvous", "scatter_objects", "send", "set_comm_timeout",
    "split_roles", "test", "wait", "wait_any", "world",
]

_TORCH_NAMES = ("FlatParameters", "GradientAverager", "broadcast_parameters")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from mpirl.comm import gradsync
        return getattr(gradsync, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
