"""The synchronous learner loop: messages in from the experience source, the algorithm's
averaged updates, weights out to the actors.

Every learner runs the same number of iterations, so collectives line up without negotiation.
Data-dependent decisions are shared before anyone acts on them: the target-return stop is made
by learner 0 and broadcast; stop requests (signals) and time-based checkpoint triggers ride in
the trainer's gradient allreduces (``mpirl.algos.api.Control``), and its non-finite verdict is
the averager's, the same on every learner.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from mpirl import comm
from mpirl.acting.envs import env_ref
from mpirl.acting.evaluation import evaluate_policy
from mpirl.algos.api import Control, LearnerContext
from mpirl.comm.gradsync import optimizer_tensors
from mpirl.execution.checkpointing import Checkpointer, restore_process_rng_state
from mpirl.execution.progress import RunProgress
from mpirl.execution.setup import RunSetup
from mpirl.execution.sync.sources import ExperienceSource, RemoteActors, SelfActing
from mpirl.files.rundir import RunDir
from mpirl.runtime import exit_codes, signals, timing
from mpirl.runtime.faults import Faults, poison_rewards

# how an iteration's end can end the run (``Learner._end_iteration``)
TARGET, POSTPONED = "target", "postponed"


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
        self.policy = setup.make_policy(self.device)
        self.params = comm.FlatParameters(self.policy)
        comm.broadcast_parameters(self.params, comms.learners)
        if self.device.type == "cpu":
            # send straight from the parameters; the policy itself acts and evaluates
            self.weights = self.params.vector.numpy()
            self.acting_policy, self._acting_params = self.policy, None
        else:
            self.weights = np.zeros(self.params.numel, dtype=np.float32)
            self.acting_policy = setup.make_policy("cpu")  # for self-acting and evaluation
            self._acting_params = comm.FlatParameters(self.acting_policy)
        epoch = resume["epoch"] if resume else 0
        self.control = Control()
        self.source: ExperienceSource | None = None
        self.ctx = LearnerContext(
            cfg=cfg, env=setup.spec, device=self.device, policy=self.policy,
            policy_params=self.params, comm=comms.learners, rank=comms.rank,
            learner_streams=setup.learner_streams,
            steps_per_iteration=setup.steps_per_iteration, epoch=epoch, control=self.control,
            build_policy=setup.make_policy, poll=lambda: self.source.poll())
        self.trainer = setup.algorithm.trainer_class(self.ctx)
        self.averaging = getattr(cfg, "sync", "gradients") == "average"
        if self.averaging:
            self.ctx.shared_tensors = self._shared_tensors
        self._skipped_seen = 0     # model averaging: non-finite updates counted so far
        self._bytes_seen = 0       # of the averagers' reduced_bytes, counted so far
        self.publication = setup.algorithm.publication(cfg)
        self.source = self.make_source(resume)
        shared = resume["shared"] if resume else None
        self.progress = RunProgress(cfg, run_dir, self.lead, self.trainer.stat_keys,
                                    (*self.trainer.columns, *self.source.columns,
                                     "allreduce_bytes_per_step"),
                                    counters=shared["counters"] if shared else None,
                                    segment=epoch)
        self._timing_totals: dict[int, np.ndarray] = {}
        if resume:
            self._restore(resume)
        self.progress.count_checkpoints_from(self._checkpoint_count())
        self.faults = Faults(comms.rank)

    def _shared_tensors(self) -> list:
        """What --sync average averages besides the trained parameters: the trainer's other
        networks and (--average-moments) its optimizers' moments."""
        tensors = list(self.trainer.shared_tensors())
        return tensors + self._moments() if self.cfg.average_moments else tensors

    def _moments(self) -> list:
        """The trainer's optimizers' moments."""
        return [t for opt in self.trainer.optimizers() for t in optimizer_tensors(opt)]

    def _at_average(self) -> bool:
        """Whether the last update made an averaging step (always, without --sync average);
        the same answer on every learner."""
        return all(a.average_every is None or a.since_average == 0 for a in self.ctx.averagers)

    def _local_moments(self) -> list:
        """With --sync average and each learner's own optimizer moments: those tensors."""
        if not self.averaging or self.cfg.average_moments:
            return []
        return self._moments()

    def _synchronize(self) -> None:
        """With --sync average: an averaging step now, unless the last update made one (a
        collective: call it on every learner at once). Evaluations and checkpoints see the
        averaged model."""
        for averager in self.ctx.averagers:
            averager.synchronize()

    def _checkpoint_count(self) -> int:
        """What --checkpoint-every counts for this algorithm (``Trainer.checkpoint_unit``)."""
        if self.trainer.checkpoint_unit == "updates":
            return self.trainer.updates
        return self.progress.c.iteration

    def make_source(self, resume: dict | None) -> ExperienceSource:
        """Where this learner's experience comes from: its actor ranks, or (when the layout
        leaves none) its own envs. Another transport is another ``ExperienceSource``."""
        setup, comms = self.setup, self.comms
        if setup.layout.self_acting:
            collector = setup.make_collector(self.acting_policy, comms.rank, resume)
            Faults(comms.rank).slow_down(collector.envs)
            return SelfActing(setup, collector, self._sync_host_weights)
        return RemoteActors(setup, comms, self.weights, self._sync_host_weights,
                            self.publication)

    # ------------------------------------------------------------------ checkpoints
    def _restore(self, resume: dict) -> None:
        shared, own = resume["shared"], resume.get("own")
        self.params.load_(torch.as_tensor(shared["weights"]))
        self.trainer.load_state_dict(shared.get("trainer", {}), (own or {}).get("trainer"))
        self.publication.load_state_dict(shared.get("publication") or {})
        self.source.load(shared, own)
        saved = (own or {}).get("moments")
        moments = self._local_moments()
        if saved and len(saved) == len(moments):
            for t, v in zip(moments, saved):
                t.copy_(v.to(t.device))
        if own:
            self.progress.restore_window(own["window"])
            restore_process_rng_state(own["rng"])

    def _checkpoint(self) -> None:
        """Collective over the world: this learner's actors join when told SAVE."""
        progress, iteration = self.progress, self.progress.c.iteration
        self._synchronize()
        self.source.settle()
        timing.switch("checkpoint")
        self.source.join_checkpoint()
        own = {"role": self.comms.role, "window": progress.window.copy(),
               "trainer": self.trainer.own_state_dict(), **self.source.own_state()}
        moments = self._local_moments()
        if moments:  # each learner's own: the lead's alone would not continue exactly
            own["moments"] = [t.detach().cpu().clone() for t in moments]
        shared = meta = None
        if self.lead:
            shared = {"weights": self.params.vector.detach().cpu().clone(),
                      "trainer": self.trainer.state_dict(),
                      "publication": self.publication.state_dict(),
                      **self.source.shared_state(),
                      "counters": progress.counters_state(iteration)}
            meta = progress.checkpoint_meta(self.setup.layout, iteration)
        result = self.checkpointer.save(own, shared, meta)
        progress.checkpointed(iteration, self._checkpoint_count())
        progress.logger.checkpoint(result)

    # ------------------------------------------------------------------ pieces of an iteration
    def _sync_host_weights(self) -> None:
        """Bring ``weights`` and the acting policy up to date (a no-op when they are the
        policy)."""
        if self._acting_params is not None:
            self.params.to_numpy(self.weights)
            self._acting_params.load_(self.weights)

    def _exchange(self, poison: bool, last: bool) -> bool:
        """This iteration's messages in, and handed to the trainer; returns whether any of
        them asks to stop."""
        messages = self.source.take(self.trainer.updates)
        if poison:
            poison_rewards(messages[0])
        requested = bool(signals.requested()) or any(m["requests"][0] for m in messages)
        self.trainer.ingest(messages)
        # read now: pipelined, the next messages land in these buffers during training
        self.progress.add_episodes(sum(m["episodes"] for m in messages))
        self.source.release(self.trainer.updates, last)
        return requested

    def _steps_taken(self, per_iter: int) -> int:
        """This iteration's env steps over all learners: ``per_iter``, or fewer where rollouts
        were cut short (--straggler-cutoff, summed here), when each learner's share of them
        goes to its trainer (``LearnerContext.batch_share``)."""
        local = self.source.steps_taken()
        if local is None:
            return per_iter
        counts = np.array([float(local)])
        if self.comms.learners.Get_size() > 1:
            comm.allreduce_sum_(self.comms.learners, counts,
                                what="the other learners at a step count")
        self.ctx.batch_share = local / max(counts[0], 1.0)
        return int(counts[0])

    def _evaluate(self, interrupt=None) -> tuple[float, float] | None:
        """The lead's evaluation: (mean, std) of its returns, or None where ``interrupt``
        (asked between steps) gave it up."""
        timing.switch("evaluation")
        self._sync_host_weights()
        t = time.perf_counter()
        c = self.progress.c
        returns = evaluate_policy(self.acting_policy, env_ref(self.cfg), self.cfg.eval_episodes,
                                  seed=self.cfg.seed, index=c.evals, interrupt=interrupt)
        if returns is None:
            c.eval_time_s += time.perf_counter() - t
            return None
        index = self.progress.next_eval_index()
        every = self.cfg.video_every
        if every and c.evals % every == 0:  # its first episode, as a video
            from mpirl.acting.video import record_episodes
            [(path, _)] = record_episodes(self.acting_policy, env_ref(self.cfg), 1,
                                          self.cfg.seed, self.run_dir.path / "videos",
                                          index=index, names=[f"eval-{c.env_steps:012d}"])
            self.progress.logger.video(path, c.env_steps)
        c.eval_time_s += time.perf_counter() - t
        return float(np.mean(returns)), float(np.std(returns))

    def _end_iteration(self, evaluate: bool, last: bool, lr: float, stopping: bool
                       ) -> str | None:
        """The evaluation (``evaluate``) and the progress row that close an iteration.
        Returns TARGET where the evaluation reached --target-return, POSTPONED where a stop
        came first (``stopping``: one this iteration ends with was requested before; else a
        stop signal to the lead while it evaluates), so that the stop's checkpoint is written
        without waiting for long episodes and the resumed run evaluates first; else None.
        Every learner computes ``evaluate`` and ``last`` from the same counters, so all of them
        enter the collectives below together."""
        progress, c = self.progress, self.progress.c
        row, ended = {}, None
        if evaluate:
            self._synchronize()
            flag = np.zeros(1, dtype=np.float64)
            if self.lead:
                result = None
                if not stopping:
                    result = self._evaluate(signals.requested if self._at_average() else None)
                if result is None:
                    flag[0] = 2.0
                else:
                    row.update(eval_return_mean=result[0], eval_return_std=result[1])
                    flag[0] = 1.0 if progress.record_eval(*result) else 0.0
            comm.broadcast_(self.comms.learners, flag, root=0,
                            what="the lead learner's evaluation")
            c.eval_pending = bool(flag[0] == 2.0)
            if c.eval_pending:  # no row: the resumed run writes it after the evaluation
                return POSTPONED
            if not self.lead:
                c.evals += 1
            ended = TARGET if flag[0] == 1.0 else None
        # (no extra row at a stop signal: the checkpoint keeps the partial window, so the
        # resumed run writes the same rows as an uninterrupted one)
        if progress.log_due() or evaluate or last or ended:
            timing.switch("other")
            if self.cfg.timing:
                row.update(self._timing_row())
            seconds = progress.since_row()
            row.update(self.trainer.row(seconds))
            row.update(self.source.row(seconds))
            row.update(self._traffic_row())
            window = comm.allreduce_sum_(self.comms.learners, progress.window.copy(),
                                         what="the other learners at a log row")
            progress.row(window, c.iteration, lr, row)
        return ended

    def _reduce_control(self, updated: bool) -> tuple[bool, bool]:
        """(stop requested on any rank, checkpoint due by time), summed over the learners,
        by the trainer's allreduces or, if it made none, by one of our own. With --sync
        average, only averaging steps sum them: until the next one, neither is known (both
        stay raised where they were raised); an iteration without updates (``updated``)
        reduces them itself, as every learner makes the same updates."""
        control = self.control
        if not control.reduced and self.averaging and updated:
            return False, False
        if not control.reduced:
            control.summed[:] = control.local
            if self.comms.learners.Get_size() > 1:
                comm.allreduce_sum_(self.comms.learners, control.summed,
                                    what="the other learners at an iteration")
        stop, due = (bool(v > 0) for v in control.summed)
        return stop, due

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Train to the budget, the target, a stop signal or a non-finite update; returns the
        exit code (the same on every rank)."""
        cfg, setup, progress = self.cfg, self.setup, self.progress
        c = progress.c
        per_iter = setup.steps_per_iteration
        end = c.iteration + math.ceil(max(cfg.total_steps - c.env_steps, 0) / per_iter)
        progress.planned_steps = c.env_steps + (end - c.iteration) * per_iter
        outcome = exit_codes.DONE
        update = 0  # updates in this process, for fault injection
        timing.clock().reset()
        progress.begin()
        if c.eval_pending:  # the evaluation a stop put off, and its row, come first
            ended = self._end_iteration(True, c.iteration == end, progress.lr(), False)
            if ended:
                outcome = exit_codes.PREEMPTED if ended == POSTPONED else outcome
                end = c.iteration
        while c.iteration < end:
            lr = progress.lr()
            self.trainer.set_lr(lr)
            self.source.progress = c.env_steps / cfg.total_steps
            poison = self.faults.strike(update) == "nan"
            update += 1
            requested = self._exchange(poison, last=c.iteration + 1 == end)
            steps = self._steps_taken(per_iter)
            _, time_due = progress.checkpoint_due(self._checkpoint_count())
            self.control.local[:] = (float(requested), float(self.lead and time_due))
            self.control.reduced = False
            results = self.trainer.train(self.source.progress)
            stop_requested, time_due = self._reduce_control(bool(results))
            diverged = False
            for stats in results:
                if stats["skipped"]:
                    c.skipped_updates += 1
                    diverged = cfg.nonfinite == "stop"
                else:
                    progress.add_update(stats)
            if self.averaging:  # counted over the learners at averaging steps
                skipped = sum(a.skipped for a in self.ctx.averagers)
                if skipped > self._skipped_seen:
                    c.skipped_updates += skipped - self._skipped_seen
                    diverged = cfg.nonfinite == "stop"
                    self._skipped_seen = skipped
            if diverged:
                outcome = exit_codes.DIVERGED
                break
            c.iteration += 1
            c.env_steps += steps
            self._count_traffic()
            if steps != per_iter:  # rollouts were cut: as many more iterations as the budget needs
                end = c.iteration + math.ceil(max(cfg.total_steps - c.env_steps, 0) / per_iter)
            last = c.iteration == end
            # the last update always ends with an evaluation, in the last row
            ended = self._end_iteration(progress.evaluation_due(last), last, lr,
                                        stopping=stop_requested and self._at_average())
            if ended == POSTPONED:
                outcome = exit_codes.PREEMPTED
            if ended:
                break
            # with --sync average, a stop or a checkpoint waits for an iteration that ends on
            # an averaging step: the checkpoint then holds what an uninterrupted run holds there
            at_average = self._at_average()
            if stop_requested and at_average:
                outcome = exit_codes.PREEMPTED
                break
            by_updates, _ = progress.checkpoint_due(self._checkpoint_count())
            if (time_due or by_updates) and at_average:
                self._checkpoint()
        if outcome != exit_codes.DIVERGED and progress.checkpointed_at != c.iteration:
            self._checkpoint()  # the end of the run, or a stop signal: continue from here
        self.source.finish(outcome)
        self._report_timing()
        if outcome == exit_codes.DONE:
            self._finish()
        elif outcome == exit_codes.PREEMPTED:
            if self.lead:
                self.run_dir.save_policy(self.policy)
            progress.report_stopped(self.checkpointer.last)
        else:
            progress.report_diverged(f"in update {c.iteration + 1}", self.checkpointer.last)
        progress.close()
        return outcome

    # ------------------------------------------------------------------ time breakdown
    def _count_traffic(self) -> None:
        sent = sum(a.reduced_bytes for a in self.ctx.averagers)
        self.progress.c.allreduce_bytes += sent - self._bytes_seen
        self._bytes_seen = sent

    def _traffic_row(self) -> dict:
        """Bytes each learner has put into the learners' gradient or weight allreduces per
        env step, over the run so far."""
        c = self.progress.c
        return {"allreduce_bytes_per_step": c.allreduce_bytes / max(c.env_steps, 1)}

    def _timing_row(self) -> dict:
        """Collective over the learners: every rank's seconds per activity (actors' arrive
        with their messages) to the lead, which returns the shares since the previous row
        (``time/<role>/<activity>``) and keeps the totals for the end-of-run table."""
        mine = {self.comms.rank: timing.clock().snapshot(), **self.source.timings()}
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
        advice = (self.setup.algorithm.cheaper_updates, self.setup.n_params,
                  self.trainer.update_work())
        text = timing.format_table(table, self.progress.elapsed(), *advice)
        traffic = self._traffic_row()["allreduce_bytes_per_step"]
        if self.comms.learners.Get_size() > 1:
            mode = (f"weights every {self.cfg.average_every} updates" if self.averaging
                    else "gradients every update")
            text += (f"\n  learners' allreduces ({mode}): {traffic:,.0f} bytes per env step "
                     "from each learner")
        self.progress.logger.timing(text)
        self.run_dir.write_json("timing.json", {"breakdown": table,
                                                "verdict": timing.verdict(table, *advice),
                                                "allreduce_bytes_per_step": traffic})

    def _finish(self) -> None:
        progress, c = self.progress, self.progress.c
        if not self.lead:
            return
        if c.last_eval is not None and c.last_eval[0] == c.env_steps:
            final = (c.last_eval[1], c.last_eval[2])
        else:
            final = self._evaluate()
            progress.logger.write_eval(c.env_steps, *final)
        lay = self.setup.layout
        summary = progress.summary(final, c.iteration, {
            "world_size": lay.size, "learners": lay.learners, "actors": lay.actors,
            "device": str(self.device), **self._traffic_row(), **self.trainer.summary()})
        progress.finish(self.policy, summary)
