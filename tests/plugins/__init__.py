"""Algorithms registered from outside mpirl, as a user's would be (MPIRL_PLUGINS), and what
the digesting ones share: a learner's log file and the digest of its tensors."""
from __future__ import annotations

import hashlib
import os


def learner_log(ctx, stem: str):
    """``<stem>-<rank>.txt`` in the run directory, opened for this learner's lines."""
    return open(os.path.join(ctx.cfg.run_dir, f"{stem}-{ctx.rank}.txt"), "w")


def digest(tensors) -> str:
    """sha256 of the tensors' bytes, in order."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()
