"""The synchronous learner loop: weights out to actors, rollouts in, one averaged update.

Every learner runs the same number of iterations, so collectives line up without negotiation.
Data-dependent decisions are shared before anyone acts on them: the target-return stop is made
by learner 0 and broadcast; stop requests (signals), time-based checkpoint triggers and the
non-finite verdict ride in the gradient allreduce, so every learner sees the same sums.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time

import numpy as np
import torch

from mpirl import comm
from mpirl.runtime import exit_codes, signals, timing
from mpirl.acting.evaluation import evaluate_policy
from mpirl.runtime.faults import Faults
from mpirl.files.logger import ProgressLogger
from mpirl.execution.sync.actor import SAVE, STOP
from mpirl.execution.sync.actor_link import ActorLink
from mpirl.execution.checkpointing import Checkpointer, restore_process_rng_state
from mpirl.execution.report import checkpoint_meta, episode_columns, run_summary
from mpirl.execution.setup import RunSetup
from mpirl.execution.sync.trainers import make_optimizer, trainer_class
from mpirl.files.rundir import RunDir


@dataclasses.dataclass
class Counters:
    """Where the run stands. Identical on every learner; saved in checkpoints."""

    iteration: int = 0            # updates done
    env_steps: int = 0
    time_s: float = 0.0           # training time of the segments before this one
    eval_time_s: float = 0.0
    next_log: int = 0
    next_eval: int | None = None
    evals: int = 0
    last_eval: list | None = None   # [env_steps, mean, std]
    target_hit: list | None = None  # [env_steps, time_s]
    skipped_updates: int = 0
    segment: int = 0              # 0 for a fresh run, +1 per resume


def choose_device(cfg, learners_comm) -> torch.device:
    """cpu, or the GPU given by this learner's rank among the learners on its node."""
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device here")
    local_rank, _ = comm.node_local(learners_comm)
    return torch.device("cuda", local_rank % torch.cuda.device_count())


class Learner:
    def __init__(self, setup: RunSetup, comms: comm.RoleComms, run_dir: RunDir,
                 checkpointer: Checkpointer, resume: dict | None = None):
        cfg = self.cfg = setup.cfg
        self.setup, self.comms, self.run_dir = setup, comms, run_dir
        self.checkpointer = checkpointer
        self.lead = comms.learners.Get_rank() == 0
        self.device = choose_device(cfg, comms.learners)
        self.model = setup.make_model(self.device)
        self.params = comm.FlatParameters(self.model)
        comm.broadcast_parameters(self.params, comms.learners)
        if self.device.type == "cpu":
            # send straight from the parameters; the model itself acts and evaluates
            self.weights = self.params.vector.numpy()
            self.acting_model, self._acting_params = self.model, None
        else:
            self.weights = np.zeros(self.params.numel, dtype=np.float32)
            self.acting_model = setup.make_model("cpu")  # for self-acting and evaluation
            self._acting_params = comm.FlatParameters(self.acting_model)
        kind = trainer_class(cfg)
        # extras: [stop requested, checkpoint due by time, the trainer's own], summed over
        # learners
        self.averager = comm.GradientAverager(self.model.parameters(), comms.learners,
                                              share=kind.batch_share(setup, comms.rank),
                                              extras=2 + kind.extra_slots)
        if kind.flat_optimizer:  # one flat parameter whose gradient is the averaged buffer
            # the trainable parameters come first in the model (normalizer statistics last)
            flat = torch.nn.Parameter(self.params.vector[:self.averager.numel],
                                      requires_grad=False)
            flat.grad = self.averager.flat
            self.optimizer = kind.flat_optimizer_for(cfg, flat)
        else:
            self.optimizer = make_optimizer(cfg, self.model.parameters())
        self.epoch = resume["epoch"] if resume else 0
        self.trainer = kind(self)
        self.link = ActorLink(setup, comms, self.weights, self._sync_host_weights,
                              self.trainer.pipelined)
        self.collector = None
        if setup.layout.self_acting:
            self.collector = setup.make_collector(self.acting_model, comms.rank, resume)
        self.stat_keys = self.trainer.stat_keys
        self._window = np.zeros(3 + len(self.stat_keys) + 1, dtype=np.float64)
        self._timing_totals: dict[int, np.ndarray] = {}
        self.counters = Counters(next_log=cfg.log_every,
                                 next_eval=cfg.eval_every if cfg.eval_every > 0 else None)
        if resume:
            self._restore(resume)
        self.faults = Faults(comms.rank)
        self.logger = ProgressLogger(run_dir, enabled=self.lead, quiet=cfg.quiet,
                                     tensorboard=cfg.tensorboard,
                                     resume_after=self.counters.env_steps if resume else None,
                                     extra_columns=self.trainer.extra_columns)
        self._segment_start = time.perf_counter()
        self._last_checkpoint = (self.counters.iteration if resume else -1,
                                 self._segment_start)

    # ------------------------------------------------------------------ checkpoints
    def _restore(self, resume: dict) -> None:
        shared = resume["shared"]
        self.params.load_(torch.as_tensor(shared["weights"]))
        self.optimizer.load_state_dict(shared["optimizer"])
        self.counters = Counters(**shared["counters"])
        self.counters.segment = resume["epoch"]
        own = resume.get("own")
        self.trainer.load(shared.get("trainer", {}), (own or {}).get("trainer"))
        if shared.get("actor_weights") is not None and self.link.sources:
            self.link.resend = np.asarray(shared["actor_weights"], dtype=np.float32)
        if own:
            self._window[:] = own["window"]
            restore_process_rng_state(own["rng"])
            for r, buffer in zip(self.link.rollouts, own.get("pending") or []):
                r.buffer[:] = buffer
                r["requests"][:] = 0  # a stop asked for then was the previous segment's
                self.link.ready = True

    def _elapsed(self) -> float:
        return self.counters.time_s + time.perf_counter() - self._segment_start

    def _checkpoint(self) -> None:
        """Collective over the world: this learner's actors join when told SAVE."""
        link = self.link
        link.drain()
        timing.switch("checkpoint")
        c = self.counters
        if link.sources:
            link.tell(SAVE, what="its actors to take a checkpoint command")
        own = {"role": self.comms.role, "window": self._window.copy(),
               "trainer": self.trainer.own_state(self.cfg.checkpoint_replay)}
        if link.ready:  # received for the next iteration: it continues from them
            own["pending"] = [r.buffer.copy() for r in link.rollouts]
        if self.collector is not None:
            own["collector"] = self.collector.state_dict()
        shared = meta = None
        if self.lead:
            shared = {"weights": self.params.vector.detach().cpu().clone(),
                      "optimizer": self.optimizer.state_dict(),
                      # pipelined, actors may act with older weights than the learners'
                      "actor_weights": self.link.actor_weights(),
                      "trainer": self.trainer.shared_state(),
                      "counters": dataclasses.asdict(dataclasses.replace(
                          c, time_s=self._elapsed()))}
            meta = checkpoint_meta(self.cfg, self.setup.layout, c.env_steps, c.iteration)
        result = self.checkpointer.save(own, shared, meta)
        self._last_checkpoint = (c.iteration, time.perf_counter())
        self.logger.checkpoint(result)

    def _checkpoint_time_due(self) -> bool:
        minutes = self.cfg.checkpoint_minutes
        return minutes > 0 and time.perf_counter() - self._last_checkpoint[1] >= 60 * minutes

    # ------------------------------------------------------------------ pieces of an iteration
    def _sync_host_weights(self) -> None:
        """Bring ``weights`` and the acting model up to date (a no-op when they are the model)."""
        if self._acting_params is not None:
            self.params.to_numpy(self.weights)
            self._acting_params.load_(self.weights)

    def _exchange(self, poison: bool, last: bool) -> bool:
        """The rollouts of this iteration in, and handed to the trainer; returns whether any
        of them asks to stop.

        On-policy (A2C): the current weights go out, then the rollouts collected with them
        come in. Pipelined (DQN): the rollouts asked for in the previous iteration come in,
        and the next ones are asked for at once, so actors collect while the learners train.
        """
        trainer, link = self.trainer, self.link
        rollouts = link.rollouts
        if self.collector is not None:  # no actors: act with the current weights
            if not link.ready:
                self._sync_host_weights()
                self.collector.collect(rollouts[0], link.progress)
        else:
            if not trainer.pipelined or not (link.in_flight or link.ready):
                link.request(weights=trainer.weights_due())
            link.drain()
        link.ready = False
        if poison:
            rollouts[0]["rewards"][:] = np.nan
        requested = bool(signals.requested()) or any(r["requests"][0] for r in rollouts)
        trainer.ingest(rollouts)
        # read now: pipelined, the next rollouts land in these buffers during training
        self._episodes = sum(r["episodes"] for r in rollouts)
        if trainer.pipelined and link.sources and not last:
            link.request(weights=trainer.weights_due())
        return requested

    def _set_lr(self, env_steps: int, planned_steps: int) -> float:
        lr = self.cfg.lr
        if self.cfg.lr_schedule == "linear":
            lr *= 1.0 - env_steps / planned_steps
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _evaluate(self, index: int) -> tuple[float, float]:
        timing.switch("evaluation")
        self._sync_host_weights()
        returns = evaluate_policy(self.acting_model, self.cfg.env, self.cfg.eval_episodes,
                                  seed=self.cfg.seed, index=index)
        return float(np.mean(returns)), float(np.std(returns))

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Train to the budget, the target, a stop signal or a non-finite update; returns the
        exit code (the same on every rank)."""
        cfg, setup, c = self.cfg, self.setup, self.counters
        per_iter = setup.steps_per_iteration
        end = c.iteration + math.ceil(max(cfg.total_steps - c.env_steps, 0) / per_iter)
        planned_steps = c.env_steps + (end - c.iteration) * per_iter
        last_row_steps, last_row_time = c.env_steps, time.perf_counter()
        flag = np.zeros(1, dtype=np.float64)
        outcome = exit_codes.DONE
        update = 0  # updates in this process, for fault injection
        timing.clock().reset()
        keys = self.stat_keys
        while c.iteration < end:
            lr = self._set_lr(c.env_steps, planned_steps)
            self.link.progress = c.env_steps / cfg.total_steps
            poison = self.faults.strike(update) == "nan"
            update += 1
            requested = self._exchange(poison, last=c.iteration + 1 == end)
            time_due = self.lead and self._checkpoint_time_due()
            results, sums = self.trainer.train([float(requested), float(time_due)],
                                               self.link.progress, self.link.pump)
            stop_requested, time_due = (v > 0 for v in sums)
            diverged = False
            for stats in results:
                if stats["skipped"]:
                    c.skipped_updates += 1
                    diverged = cfg.nonfinite == "stop"
                else:
                    self._window[3:3 + len(keys)] += [stats[k] for k in keys]
                    self._window[-1] += 1
            if diverged:
                outcome = exit_codes.DIVERGED
                break
            c.iteration += 1
            c.env_steps += per_iter
            self._window[:3] += self._episodes
            last = c.iteration == end
            row = {}
            stop = False
            # every learner computes `evaluate` and `log` from the same counters, so all of
            # them enter the collectives below together
            # the last update always ends with an evaluation, in the last row
            evaluate = last or (c.next_eval is not None and c.env_steps >= c.next_eval)
            if evaluate:
                while c.next_eval is not None and c.next_eval <= c.env_steps:
                    c.next_eval += cfg.eval_every
                if self.lead:
                    t = time.perf_counter()
                    mean, std = self._evaluate(c.evals)
                    c.eval_time_s += time.perf_counter() - t
                    row.update(eval_return_mean=mean, eval_return_std=std)
                    c.last_eval = [c.env_steps, mean, std]
                    if cfg.target_return is not None and mean >= cfg.target_return:
                        c.target_hit = [c.env_steps, self._elapsed()]
                        stop = True
                c.evals += 1
                flag[0] = 1.0 if stop else 0.0
                comm.broadcast_(self.comms.learners, flag, root=0,
                                what="the lead learner's evaluation")
                stop = bool(flag[0])
            # (no extra row at a stop signal: the checkpoint keeps the partial window, so the
            # resumed run writes the same rows as an uninterrupted one)
            if c.env_steps >= c.next_log or evaluate or last or stop:
                timing.switch("other")
                while c.next_log <= c.env_steps:
                    c.next_log += cfg.log_every
                if cfg.timing:
                    row.update(self._timing_row())
                row.update(self.trainer.row(time.perf_counter() - last_row_time))
                window = comm.allreduce_sum_(self.comms.learners, self._window.copy(),
                                             what="the other learners at a log row")
                now = time.perf_counter()
                row = self._row(window, c, self._elapsed(),
                                (c.env_steps - last_row_steps) / max(now - last_row_time, 1e-9),
                                lr, row)
                last_row_steps, last_row_time = c.env_steps, now
                self.logger.write(row)
                self._window[:] = 0
            if stop:
                break
            if stop_requested:
                outcome = exit_codes.PREEMPTED
                break
            if time_due or (cfg.checkpoint_every and c.iteration % cfg.checkpoint_every == 0):
                self._checkpoint()
        if outcome != exit_codes.DIVERGED and self._last_checkpoint[0] != c.iteration:
            self._checkpoint()  # the end of the run, or a stop signal: continue from here
        if self.link.sources:
            self.link.drain()
            self.link.tell(STOP, outcome, weights=True, what="its actors to take the stop command")
        self._report_timing()
        if outcome == exit_codes.DONE:
            self._finish()
        elif outcome == exit_codes.PREEMPTED:
            self._report_preempted()
        else:
            self._report_diverged()
        self.logger.close()
        if self.collector is not None:
            self.collector.envs.close()
        return outcome

    def _row(self, window, c: Counters, time_s, sps, lr, extra) -> dict:
        updates = max(window[-1], 1)
        row = {"env_steps": c.env_steps, "iterations": c.iteration, "time_s": round(time_s, 3),
               "sps": round(sps, 1), **episode_columns(*window[:3])}
        for i, k in enumerate(self.stat_keys):
            row[k] = window[3 + i] / updates if window[-1] else float("nan")
        row["lr"] = lr
        row["skipped_updates"] = c.skipped_updates
        row.update(extra)
        return row

    # ------------------------------------------------------------------ time breakdown
    def _timing_row(self) -> dict:
        """Collective over the learners: every rank's seconds per activity (actors' arrive
        with their rollouts) to the lead, which returns the shares since the previous row
        (``time/<role>/<activity>``) and keeps the totals for the end-of-run table."""
        mine = {self.comms.rank: timing.clock().snapshot()}
        for r, rank in zip(self.link.rollouts, self.link.actor_ranks):
            mine[rank] = r["timing"].copy()
        parts = comm.gather_to_root(self.comms.learners, mine,
                                    what="the other learners at a log row")
        if parts is None:
            return {}
        totals = {rank: t for part in parts for rank, t in part.items()}
        window = {r: t - self._timing_totals.get(r, 0.0) for r, t in totals.items()}
        self._timing_totals = totals
        roles = {r: self.setup.layout.role(r) for r in totals}
        table = timing.breakdown(window, roles)
        row = {f"time/{role}/{cat}": v["share"]
               for role, info in table.items() for cat, v in info["categories"].items()}
        row.update(timing.summary_columns(table))
        return row

    def _report_timing(self) -> None:
        if not (self.lead and self.cfg.timing and self._timing_totals):
            return
        roles = {r: self.setup.layout.role(r) for r in self._timing_totals}
        table = timing.breakdown(self._timing_totals, roles)
        self.logger.timing(timing.format_table(table, self._elapsed()))
        self.run_dir.write_json("timing.json", {"breakdown": table,
                                                "verdict": timing.verdict(table)})

    def _report_preempted(self) -> None:
        if not self.lead:
            return
        self.run_dir.save_policy(self.model)
        where = (f"checkpoint {self.checkpointer.last}" if self.checkpointer.last
                 else "NO checkpoint could be written")
        sys.stderr.write(
            f"mpirl: stopped by a stop signal (SIGTERM/SIGUSR1) at env step "
            f"{self.counters.env_steps:,}; {where}. Continue with: python -m mpirl.train "
            f"--resume {self.run_dir.path}\n")
        sys.stderr.flush()

    def _report_diverged(self) -> None:
        if not self.lead:
            return
        c = self.counters
        last = self.checkpointer.last or "none yet"
        sys.stderr.write(
            f"mpirl: error: the loss or gradient became NaN/Inf in update {c.iteration + 1} "
            f"(after env step {c.env_steps:,}); the update was not applied and training "
            f"stopped. Newest good checkpoint: {last}. Resume from it with --resume "
            f"{self.run_dir.path} and e.g. a lower --lr (with --override lr), or train with "
            f"--nonfinite skip to skip such updates\n")
        sys.stderr.flush()

    def _finish(self) -> None:
        cfg, c = self.cfg, self.counters
        if not self.lead:
            return
        wall = self._elapsed()
        if c.last_eval is not None and c.last_eval[0] == c.env_steps:
            final_mean, final_std = c.last_eval[1], c.last_eval[2]
        else:
            final_mean, final_std = self._evaluate(c.evals)
            self.logger.write_eval(c.env_steps, final_mean, final_std)
        self.run_dir.save_policy(self.model)
        summary = {
            **run_summary(cfg, (final_mean, final_std), c.env_steps, c.iteration, wall,
                          c.eval_time_s, c.target_hit, c.skipped_updates, c.segment),
            "world_size": self.setup.layout.size,
            "learners": self.setup.layout.learners,
            "actors": self.setup.layout.actors,
            "device": str(self.device),
            **self.trainer.summary(),
        }
        self.run_dir.write_summary(summary)
        self.logger.final(summary)
