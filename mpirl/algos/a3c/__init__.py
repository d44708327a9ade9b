"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016, arXiv:1602.01783) on sharded
parameter servers.

Workers each step their own envs for --n-steps steps, compute the A2C gradient of that rollout
on their copy of the weights and push it to the servers, which apply gradients in arrival
order with the shared optimizer statistics of the paper (RMSProp, or --optimizer adam); no
worker waits for another.
"""
from __future__ import annotations

from mpirl.algos import actor_critic
from mpirl.algos.api import PARAMETER_SERVER, Algorithm
from mpirl.algos.registry import register
from mpirl.config.fields import ConfigError


def _validate(cfg) -> None:
    if cfg.device == "cuda":
        raise ConfigError("--algo a3c computes on the workers' CPUs (many small gradients); "
                          "use --device cpu, or a2c/dqn for GPU learners")



ALGORITHM = register(Algorithm(
    name="a3c",
    description="asynchronous advantage actor-critic on parameter servers",
    execution=PARAMETER_SERVER,
    options=(actor_critic.ActorCriticOptions, actor_critic.EntropyOptions),
    policy=actor_critic.policy,
    collector=actor_critic.collector,
    message=actor_critic.rollout_message,
    worker="mpirl.algos.a3c.worker:A3CWorker",
    validate=_validate,
))
