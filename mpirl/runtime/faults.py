"""Fault injection, for testing how a job fails: ``MPIRL_FAULT="KIND@RANK:UPDATE[,...]"``.

At its UPDATE-th update (counting from 0 in this process), world rank RANK:

- ``raise``: raises an exception, as a bug in an env or a model would;
- ``hang``: stops responding (sleeps), as a deadlocked or stuck process would;
- ``nan``: puts NaN into the rewards it collects, so the loss becomes NaN.

Unset, it costs one dictionary lookup per update.
"""
from __future__ import annotations

import os
import time

ENV_VAR = "MPIRL_FAULT"
KINDS = ("raise", "hang", "nan")


class InjectedFault(RuntimeError):
    pass


def parse(text: str) -> dict[tuple[int, int], str]:
    """{(rank, update): kind} from the variable's text; raises ValueError on bad syntax."""
    plan = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, where = item.partition("@")
        rank, _, update = where.partition(":")
        if kind not in KINDS or not rank.isdigit() or not update.isdigit():
            raise ValueError(f"{ENV_VAR}: cannot read {item!r}; expected KIND@RANK:UPDATE with "
                             f"KIND one of {', '.join(KINDS)}")
        plan[(int(rank), int(update))] = kind
    return plan


def poison_rewards(message) -> None:
    """The "nan" fault: NaN in a message's rewards, so the loss becomes NaN."""
    message["rewards"][:] = float("nan")


class Faults:
    def __init__(self, rank: int, text: str | None = None):
        self.rank = rank
        self.plan = parse(os.environ.get(ENV_VAR, "") if text is None else text)

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
