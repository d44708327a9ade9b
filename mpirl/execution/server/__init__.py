"""A3C: asynchronous advantage actor-critic over a sharded parameter server (Mnih et al. 2016,
arXiv:1602.01783).

Workers each step their own envs for ``--n-steps`` steps, compute the A2C gradient of that
rollout on their copy of the weights, push it to the servers (``mpirl.ps``) and continue with
the fresh weights that come back; no worker waits for another. The servers hold the weights
and the shared optimizer statistics and apply gradients in arrival order.

The first server (world rank 0) is the lead: it counts env steps from the workers' reports,
writes progress rows, asks a worker to evaluate now and then (reply slot ``evaluate``; the
result comes back in that worker's next report), and decides when the run ends (budget,
target return, stop signal, non-finite gradient). Workers learn of the end from the lead's
reply, say goodbye to every server, and the servers then assemble the final weights.

Modules: ``protocol`` (the report and reply slots of the messages), ``worker`` (rollouts and
gradients), ``lead`` (what the servers make of the reports: schedules, progress rows, the end
of the run) and ``server`` (a server rank's life: serve, checkpoint, finish).
"""
from mpirl.execution.server.server import describe, run_server
from mpirl.execution.server.worker import A3CWorker, run_worker

__all__ = ["A3CWorker", "describe", "run_server", "run_worker"]
