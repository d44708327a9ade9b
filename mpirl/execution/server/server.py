"""A parameter-server rank: serve its slice, join checkpoints when the workers pause, and at the
end assemble the final weights on the lead."""
from __future__ import annotations

import numpy as np

from mpirl import comm
from mpirl.execution.checkpointing import Checkpointer
from mpirl.execution.server.lead import Follower, Lead
from mpirl.execution.setup import RunSetup
from mpirl.files.rundir import RunDir
from mpirl.ps import OptimizerRule, ParameterServer, shard_bounds
from mpirl.runtime import exit_codes


def run_server(setup: RunSetup, comms: comm.RoleComms, run_dir: RunDir,
               checkpointer: Checkpointer, resume: dict | None = None) -> int:
    """Serve this rank's slice until every worker is done, then assemble the final weights on
    the lead and join the checkpoint; returns the run's exit code.

    A resumed server continues from its own slice, optimizer statistics and version (same
    layout), or else slices the saved weights afresh with new statistics."""
    lay = setup.layout
    index = comms.rank
    lo, hi = shard_bounds(setup.n_params, lay.learners)[index]
    own = (resume or {}).get("own")
    shared = (resume or {}).get("shared")
    if own is not None:
        values = np.array(own["values"], dtype=np.float32)
    else:
        full = shared["weights"].numpy() if shared is not None else \
            comm.FlatParameters(setup.make_policy("cpu")).vector.numpy()
        values = np.array(full[lo:hi], dtype=np.float32)
    rule = OptimizerRule(values, setup.cfg.optimizer, setup.cfg.lr)
    if own is not None:
        rule.optimizer.load_state_dict(own["optimizer"])
    counters = shared["counters"] if shared is not None else None
    if index == 0:
        hooks = Lead(setup, rule, run_dir, setup.algorithm.worker_class.stat_keys, counters,
                     segment=resume["epoch"] if resume else 0)
    else:
        hooks = Follower(setup, rule, index, counters["env_steps"] if counters else 0)
    server = ParameterServer(comms.world, index, list(range(lay.learners)),
                             list(range(lay.learners, lay.size)), values, rule,
                             setup.cfg.max_staleness, hooks,
                             version=own["version"] if own is not None else 0)
    while True:
        stats = server.serve()
        # the servers alone: assemble the weights and counters on the lead
        parts = comm.gather_to_root(comms.learners, (values, stats),
                                    what="the other servers to finish")
        code = np.zeros(1)
        if parts is not None:
            final, all_stats = np.concatenate([p[0] for p in parts]), [p[1] for p in parts]
            code[0] = hooks.outcome if hooks.outcome is not None else exit_codes.DONE
        comm.broadcast_(comms.learners, code, root=0, what="the lead server's exit code")
        # the workers join this collective too: at every pause, and at the end unless a
        # non-finite gradient ended the run
        if server.paused or int(code[0]) != exit_codes.DIVERGED:
            ckpt = meta = None
            if parts is not None:
                ckpt, meta = hooks.checkpoint_state(final, all_stats)
            mine = {"role": "server", "values": values.copy(), "optimizer": rule.state_dict(),
                    "version": server.version}
            result = checkpointer.save(mine, ckpt, meta)
            if parts is not None:
                hooks.run.logger.checkpoint(result)
        if not server.paused:
            break
        if parts is not None:
            hooks.checkpointed(all_stats)
    if parts is not None:
        hooks.finish(final, all_stats, checkpointer.last)
    return int(code[0])
