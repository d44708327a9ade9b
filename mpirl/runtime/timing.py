"""Where the time goes: a per-process stopwatch over named activities, cheap enough to leave on.

Each rank is always "in" exactly one activity; ``switch(name)`` charges the time since the last
switch to the activity that just ended. A switch costs one ``perf_counter`` call and a list
update, and a training iteration makes a few dozen, so the breakdown stays on by default
(``--no-timing`` turns it off, to measure its cost).

``breakdown`` turns every rank's totals into per-role means, maxima and the slowest rank, and
``verdict`` says what that means for the run.
"""
from __future__ import annotations

import time

import numpy as np

CATEGORIES = ("env", "inference", "send", "wait_weights", "wait_rollouts", "wait_learners",
              "gradient", "allreduce", "optimizer", "replay", "checkpoint", "evaluation",
              "other")
_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
DESCRIPTIONS = {
    "env": "stepping environments",
    "inference": "policy forward passes while acting",
    "send": "sending weights or rollouts (for actors that do not wait otherwise: until their "
            "learner takes them)",
    "wait_weights": "waiting for weights or a command from the learner",
    "wait_rollouts": "waiting for rollouts from actors",
    "wait_learners": "waiting for the other learners at the allreduce",
    "gradient": "loss and backward pass",
    "allreduce": "averaging gradients or weights (the allreduce itself)",
    "optimizer": "clipping and the optimizer step",
    "replay": "writing to and sampling from the replay (DQN)",
    "checkpoint": "writing checkpoints",
    "evaluation": "evaluation episodes",
    "other": "everything else (logging, set-up)",
}


class Stopwatch:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.totals = [0.0] * len(CATEGORIES)
        self._current = _INDEX["other"]
        self._since = time.perf_counter()

    def reset(self, category: str = "other") -> None:
        """Start counting afresh (at the start of a training loop: set-up is not training)."""
        self.totals = [0.0] * len(CATEGORIES)
        self._current = _INDEX[category]
        self._since = time.perf_counter()

    def switch(self, category: str) -> None:
        """From now on, time counts as ``category``."""
        if not self.enabled:
            return
        now = time.perf_counter()
        self.totals[self._current] += now - self._since
        self._since = now
        self._current = _INDEX[category]

    def snapshot(self, out: np.ndarray | None = None) -> np.ndarray:
        """Seconds per category so far, the running activity included."""
        if self.enabled:
            now = time.perf_counter()
            self.totals[self._current] += now - self._since
            self._since = now
        if out is None:
            return np.array(self.totals)
        out[:] = self.totals
        return out


_clock = Stopwatch()


def clock() -> Stopwatch:
    """This process's stopwatch (one per rank)."""
    return _clock


def switch(category: str) -> None:
    _clock.switch(category)


def configure(enabled: bool) -> None:
    global _clock
    _clock = Stopwatch(enabled)


# ---------------------------------------------------------------------- aggregation
def breakdown(totals: dict[int, np.ndarray], roles: dict[int, str]) -> dict[str, dict]:
    """Per role: {category: {"seconds", "share", "max_share", "slowest_rank"}} from seconds per
    rank (``totals[rank]``). Shares are fractions of each rank's accounted time."""
    out: dict[str, dict] = {}
    for role in dict.fromkeys(roles[r] for r in sorted(totals)):
        ranks = [r for r in sorted(totals) if roles[r] == role]
        secs = np.stack([totals[r] for r in ranks])
        wall = np.maximum(secs.sum(axis=1, keepdims=True), 1e-12)
        shares = secs / wall
        cats = {}
        for i, cat in enumerate(CATEGORIES):
            if secs[:, i].max() <= 0:
                continue
            worst = int(np.argmax(shares[:, i]))
            cats[cat] = {"seconds": float(secs[:, i].mean()), "share": float(shares[:, i].mean()),
                         "max_share": float(shares[worst, i]), "slowest_rank": ranks[worst]}
        out[role] = {"ranks": len(ranks), "categories": cats}
    return out


def share(table: dict, role: str, *cats: str) -> float:
    """The mean share of ``cats`` together for ``role`` in a ``breakdown`` table (0 if the role
    is absent). "learner" also finds learners that act themselves ("learner+actor")."""
    info = table.get(role) or (table.get("learner+actor") if role == "learner" else None)
    got = (info or {}).get("categories", {})
    return sum(got.get(c, {}).get("share", 0.0) for c in cats)


def summary_columns(table: dict) -> dict[str, float]:
    """The four shares progress.csv carries (the full breakdown goes to TensorBoard)."""
    return {"learner_wait_rollouts": share(table, "learner", "wait_rollouts"),
            "learner_wait_learners": share(table, "learner", "wait_learners"),
            "learner_gradient": share(table, "learner", "gradient", "allreduce", "optimizer"),
            "actor_wait_weights": (share(table, "actor", "wait_weights") if "actor" in table
                                   else float("nan"))}


# Below this many parameters a learner's update is too small for a GPU: kernel launches and
# host-device hand-offs would cost it more than its arithmetic does on a CPU core.
SMALL_MODEL = 1_000_000
# ... or, where a trainer says how much arithmetic an update is (parameters trained x samples
# per learner), below this many multiply-adds. Measured on an H200: SAC's update of two
# 256x256 critics and a policy on 128 samples per learner (26M) took 5.3 ms on the GPU against
# 4.7 ms on one Xeon core. The GPU's time there is kernel launches and host-device hand-offs,
# about fixed, while the CPU's grows with the arithmetic: twice that work is where a GPU pays.
SMALL_UPDATE = 50_000_000


def verdict(table: dict, cheaper_updates: str = "", n_params: int | None = None,
            update_work: int | None = None) -> list[str]:
    """Plain-language conclusions from a ``breakdown`` table, most important first.
    ``cheaper_updates``: the algorithm's way to less gradient work per env step;
    ``n_params``: the model's size, and ``update_work``, where known, the arithmetic of one
    update (parameters trained x samples), which decide whether a GPU would help."""
    out = []
    # a learner's sends complete when its actors take the weights: waiting on them too
    learners_wait = share(table, "learner", "wait_rollouts", "send")
    # streaming actors wait only when their learner does not take their unrolls (in "send")
    actors_wait = share(table, "actor", "wait_weights", "send")
    grad = share(table, "learner", "gradient", "optimizer", "allreduce")
    wait_peers = share(table, "learner", "wait_learners")
    if learners_wait >= 0.3 and actors_wait < 0.5:
        out.append(f"learners wait on actors {learners_wait:.0%} of the time: the actors are "
                   "the bottleneck; add actor ranks (on more cores or nodes), or make env "
                   "steps cheaper")
    elif actors_wait >= 0.3 and learners_wait < 0.5:
        out.append(f"actors wait {actors_wait:.0%} of the time for their learners (for weights, "
                   "or to take their data): the learners are the bottleneck")
    elif learners_wait >= 0.3 and actors_wait >= 0.3:
        out.append(f"learners ({learners_wait:.0%}) and actors ({actors_wait:.0%}) mostly wait "
                   "for each other: each exchange carries too little work for its hand-off "
                   "cost; raise --envs-per-actor or --n-steps")
    if grad >= 0.5:
        text = f"gradient work dominates the learners ({grad:.0%} of their time)"
        if cheaper_updates:
            text += f": {cheaper_updates}"
        small = (update_work < SMALL_UPDATE if update_work is not None
                 else n_params is not None and n_params < SMALL_MODEL)
        if small:
            size = (f"{update_work / 1e6:.1f}M multiply-adds per update"
                    if update_work is not None else f"{n_params:,} parameters")
            text += (f"; at {size} a GPU would not speed it up (its kernel launches and "
                     "host-device hand-offs would cost more than the arithmetic does here), "
                     "and more --learners help only with cores to spare for them")
        else:
            text += "; for a model this large, --device cuda or more --learners speed it up"
        out.append(text)
    if wait_peers >= 0.2:
        out.append(f"learners wait on each other {wait_peers:.0%} of the time at the allreduce:"
                   " their loads are uneven (actors per learner, or a slow node)")
    env = share(table, "actor", "env") or share(table, "learner", "env")
    if not out and env >= 0.5:
        out.append(f"env stepping takes {env:.0%} of the acting time: more actors add "
                   "throughput as long as there are cores for them")
    if not out:
        out.append("no single activity dominates")
    return out


def format_table(table: dict, wall_s: float, cheaper_updates: str = "",
                 n_params: int | None = None, update_work: int | None = None) -> str:
    """The end-of-run "where the time went" table, with its verdict (``verdict``)."""
    lines = [f"where the time went ({wall_s:.1f} s of training):"]
    for role, info in table.items():
        lines.append(f"  {role} ({info['ranks']} rank{'s' if info['ranks'] > 1 else ''}):")
        cats = sorted(info["categories"].items(), key=lambda kv: -kv[1]["share"])
        for cat, c in cats:
            if c["share"] < 0.005:
                continue
            worst = (f"  max {c['max_share']:5.1%} on rank {c['slowest_rank']}"
                     if info["ranks"] > 1 else "")
            lines.append(f"    {cat:<14} {c['seconds']:8.2f} s {c['share']:6.1%}{worst}"
                         f"   {DESCRIPTIONS[cat]}")
    lines += [f"  verdict: {v}" for v in verdict(table, cheaper_updates, n_params, update_work)]
    return "\n".join(lines)
