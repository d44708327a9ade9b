"""Fault injection, for testing how a job fails or slows: ``MPIRL_FAULT="KIND@RANK:UPDATE[,...]"``.

At its UPDATE-th update (counting from 0 in this process), world rank RANK:

- ``raise``: raises an exception, as a bug in an env or a model would;
- ``hang``: stops responding (sleeps), as a deadlocked or stuck process would;
- ``nan``: puts NaN into the rewards it collects, so the loss becomes NaN.

``slow@RANK:FACTOR`` makes every env step of world rank RANK take FACTOR times as long (it
sleeps the difference, as a rank on a busy node or with a costlier env would; sleeping, it
leaves the cores to the others).

Unset, it costs one dictionary lookup per update.
"""
from __future__ import annotations

import os
import time

ENV_VAR = "MPIRL_FAULT"
KINDS = ("raise", "hang", "nan")
SLOW = "slow"


class InjectedFault(RuntimeError):
    pass


def parse(text: str) -> tuple[dict[tuple[int, int], str], dict[int, float]]:
    """({(rank, update): kind}, {rank: slow-down factor}) from the variable's text; raises
    ValueError on bad syntax."""
    plan, slow = {}, {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, where = item.partition("@")
        rank, _, value = where.partition(":")
        if kind == SLOW and rank.isdigit():
            try:
                factor = float(value)
            except ValueError:
                factor = float("nan")
            if not 1.0 <= factor < float("inf"):
                raise ValueError(f"{ENV_VAR}: cannot read {item!r}; expected slow@RANK:FACTOR "
                                 "with FACTOR a number >= 1")
            slow[int(rank)] = factor
            continue
        if kind not in KINDS or not rank.isdigit() or not value.isdigit():
            raise ValueError(f"{ENV_VAR}: cannot read {item!r}; expected KIND@RANK:UPDATE with "
                             f"KIND one of {', '.join(KINDS)}, or slow@RANK:FACTOR")
        plan[(int(rank), int(value))] = kind
    return plan, slow


def poison_rewards(message) -> None:
    """The "nan" fault: NaN in a message's rewards, so the loss becomes NaN."""
    message["rewards"][:] = float("nan")


class Faults:
    def __init__(self, rank: int, text: str | None = None):
        self.rank = rank
        self.plan, slow = parse(os.environ.get(ENV_VAR, "") if text is None else text)
        self.slow_factor = slow.get(rank, 1.0)

    def slow_down(self, envs) -> None:
        """The "slow" fault: make ``envs``' steps (an ``EnvVector``) ``slow_factor`` times as
        long. The extra time is slept once it adds up to a millisecond, since a sleep cannot
        be much shorter."""
        if self.slow_factor == 1.0:
            return
        step, extra = envs.step, self.slow_factor - 1.0
        owed = [0.0]

        def slow_step(*args, **kwargs):
            t = time.perf_counter()
            out = step(*args, **kwargs)
            owed[0] += extra * (time.perf_counter() - t)
            if owed[0] >= 1e-3:
                t = time.perf_counter()
                time.sleep(owed[0])
                owed[0] -= time.perf_counter() - t
            return out

        envs.step = slow_step

    def strike(self, update: int) -> str | None:
        """Carry out the fault planned for this rank at this update; returns "nan" when the
        caller should poison its data, else None."""
        kind = self.plan.get((self.rank, update))
        if kind == "raise":
            raise InjectedFault(f"injected failure at update {update} ({ENV_VAR})")
        if kind == "hang":
            while True:
                time.sleep(60)
        return kind
