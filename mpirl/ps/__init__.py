"""A generic sharded parameter server over point-to-point MPI messages.

A flat float32 vector is split into contiguous slices, one per server rank. Workers push a
gradient (any float vector of the same length) and get the updated slices back; each server
applies what arrives, in arrival order, with its own update rule. Nothing here knows about
reinforcement learning: A3C (``mpirl.execution.server``) and the tabular Q-learning example
(``examples/tabular_q_server.py``) are two users.
"""
from mpirl.ps.client import ParameterClient
from mpirl.ps.messages import BYE, FETCH, GRADIENT, HEADER, PAUSE, SKIP, Message, shard_bounds
from mpirl.ps.rules import OptimizerRule, SGDRule
from mpirl.ps.server import ParameterServer, ServerHooks, ServerStats

__all__ = ["BYE", "FETCH", "GRADIENT", "HEADER", "PAUSE", "SKIP", "Message", "OptimizerRule",
           "ParameterClient", "ParameterServer", "SGDRule", "ServerHooks", "ServerStats",
           "shard_bounds"]
