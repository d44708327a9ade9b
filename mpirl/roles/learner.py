"""The synchronous learner loop: weights out to actors, rollouts in, one averaged update.

Every learner runs the same number of iterations, so collectives line up without negotiation;
the one data-dependent decision (stop at the target return) is made by learner 0 and broadcast
to the other learners before anyone acts on it.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from mpirl import comm
from mpirl.algos import A2C
from mpirl.evaluation import evaluate_policy
from mpirl.logger import ProgressLogger
from mpirl.roles.actor import CONTROL_TAG, ROLLOUT_TAG, RUN, STOP, WEIGHTS_TAG
from mpirl.roles.setup import RunSetup
from mpirl.rundir import RunDir

LOSS_KEYS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm")


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5, foreach=True)
    return torch.optim.Adam(params, lr=cfg.lr, eps=1e-5, foreach=True)


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
    def __init__(self, setup: RunSetup, comms: comm.RoleComms, run_dir: RunDir):
        cfg = self.cfg = setup.cfg
        self.setup, self.comms, self.run_dir = setup, comms, run_dir
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
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        layout = setup.layout
        my_share = layout.acting_ranks_of(comms.rank) / (
            layout.learners if layout.self_acting else layout.actors)
        self.averager = comm.GradientAverager(self.model.parameters(), comms.learners,
                                              share=my_share)
        self.algo = A2C(cfg, self.model, self.averager, self.optimizer)
        self.sources = list(range(1, comms.group.Get_size()))
        self._control = np.zeros(1, dtype=np.float64)
        self.rollouts = [setup.make_rollout_buffer() for _ in range(max(1, len(self.sources)))]
        self.collector = None
        if layout.self_acting:
            self.envs = setup.make_envs(comms.rank)
            self.collector = setup.make_collector(self.acting_model, self.envs, comms.rank)
        self.logger = ProgressLogger(run_dir, enabled=self.lead, quiet=cfg.quiet,
                                     tensorboard=cfg.tensorboard)
        self._window = np.zeros(3 + len(LOSS_KEYS) + 1, dtype=np.float64)

    # ------------------------------------------------------------------ pieces of an iteration
    def _sync_host_weights(self) -> None:
        """Bring ``weights`` and the acting model up to date (a no-op when they are the model)."""
        if self._acting_params is not None:
            self.params.to_numpy(self.weights)
            self._acting_params.load_(self.weights)

    def _publish_weights(self, stop: bool) -> list:
        """Start sending the control value (RUN or STOP), then the current weights, to this
        learner's actors."""
        self._sync_host_weights()
        self._control[0] = STOP if stop else RUN
        return (comm.isend_all(self.comms.group, self._control, self.sources, tag=CONTROL_TAG) +
                comm.isend_all(self.comms.group, self.weights, self.sources, tag=WEIGHTS_TAG))

    def _exchange(self) -> None:
        """Weights out, the rollouts collected with them in. Receives are posted first, so
        rollouts land while the weights are still going out; the sends are pushed with brisk
        polls, since each step of a large transfer needs this rank's attention."""
        if self.collector is not None:  # no actors: act with the current weights
            self._sync_host_weights()
            self.collector.collect(self.rollouts[0])
            return
        incoming = comm.irecv_all(self.comms.group, [r.buffer for r in self.rollouts],
                                  self.sources, tag=ROLLOUT_TAG)
        comm.wait(self._publish_weights(stop=False), max_sleep_s=comm.HANDOFF_SLEEP_S)
        comm.wait(incoming)

    def _batch(self) -> dict[str, np.ndarray]:
        """Rollouts of all this learner's actors side by side along the env axis."""
        out = {}
        for key in ("obs", "actions", "rewards", "dones"):
            parts = [r[key] for r in self.rollouts]
            out[key] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return out

    def _set_lr(self, iteration: int) -> float:
        lr = self.cfg.lr
        if self.cfg.lr_schedule == "linear":
            lr *= 1.0 - iteration / self.setup.iterations
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _evaluate(self, index: int) -> tuple[float, float]:
        self._sync_host_weights()
        returns = evaluate_policy(self.acting_model, self.cfg.env, self.cfg.eval_episodes,
                                  seed=self.cfg.seed, index=index)
        return float(np.mean(returns)), float(np.std(returns))

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        cfg, setup = self.cfg, self.setup
        per_iter = setup.steps_per_iteration
        start = time.perf_counter()
        eval_time = 0.0
        env_steps = 0
        next_log = cfg.log_every
        next_eval = cfg.eval_every if cfg.eval_every > 0 else None
        last_eval: tuple[int, float, float] | None = None
        target_hit: tuple[int, float] | None = None
        last_row_steps, last_row_time = 0, start
        flag = np.zeros(1, dtype=np.float64)
        evals = 0
        iteration = 0
        for iteration in range(setup.iterations):
            lr = self._set_lr(iteration)
            self._exchange()
            stats = self.algo.update(self._batch())
            env_steps += per_iter
            for r in self.rollouts:
                self._window[:3] += r["episodes"]
            self._window[3:3 + len(LOSS_KEYS)] += [stats[k] for k in LOSS_KEYS]
            self._window[-1] += 1
            last = iteration == setup.iterations - 1
            row = {}
            stop = False
            # every learner computes `evaluate` and `log` from the same counters, so all of
            # them enter the collectives below together
            evaluate = next_eval is not None and env_steps >= next_eval and not last
            if evaluate:
                while next_eval <= env_steps:
                    next_eval += cfg.eval_every
                if self.lead:
                    t = time.perf_counter()
                    mean, std = self._evaluate(evals)
                    eval_time += time.perf_counter() - t
                    row.update(eval_return_mean=mean, eval_return_std=std)
                    last_eval = (env_steps, mean, std)
                    if cfg.target_return is not None and mean >= cfg.target_return:
                        target_hit = (env_steps, time.perf_counter() - start)
                        stop = True
                evals += 1
                flag[0] = 1.0 if stop else 0.0
                comm.broadcast_(self.comms.learners, flag, root=0)
                stop = bool(flag[0])
            if env_steps >= next_log or evaluate or last or stop:
                while next_log <= env_steps:
                    next_log += cfg.log_every
                window = comm.allreduce_sum_(self.comms.learners, self._window.copy())
                now = time.perf_counter()
                row = self._row(window, env_steps, iteration + 1, now - start,
                                (env_steps - last_row_steps) / max(now - last_row_time, 1e-9),
                                lr, row)
                last_row_steps, last_row_time = env_steps, now
                self.logger.write(row)
                self._window[:] = 0
            if stop:
                break
        comm.wait(self._publish_weights(stop=True), max_sleep_s=comm.HANDOFF_SLEEP_S)
        wall = time.perf_counter() - start
        return self._finish(env_steps, iteration + 1, wall, eval_time, last_eval, target_hit,
                            evals)

    def _row(self, window, env_steps, iterations, time_s, sps, lr, extra) -> dict:
        episodes = window[0]
        updates = max(window[-1], 1)
        row = {"env_steps": env_steps, "iterations": iterations, "time_s": round(time_s, 3),
               "sps": round(sps, 1), "episodes": int(episodes),
               "episode_return_mean": window[1] / episodes if episodes else float("nan"),
               "episode_length_mean": window[2] / episodes if episodes else float("nan")}
        for i, k in enumerate(LOSS_KEYS):
            row[k] = window[3 + i] / updates
        row["lr"] = lr
        row.update(extra)
        return row

    def _finish(self, env_steps, iterations, wall, eval_time, last_eval, target_hit, evals):
        cfg = self.cfg
        summary = None
        if self.lead:
            if last_eval is not None and last_eval[0] == env_steps:
                final_mean, final_std = last_eval[1], last_eval[2]
            else:
                final_mean, final_std = self._evaluate(evals)
                self.logger.write_eval(env_steps, final_mean, final_std)
            self.run_dir.save_policy(self.model)
            train_time = wall - eval_time
            summary = {
                "final_eval_return": final_mean,
                "final_eval_return_std": final_std,
                "env_steps": env_steps,
                "iterations": iterations,
                "wall_time_s": round(wall, 3),
                "eval_time_s": round(eval_time, 3),
                "sps": round(env_steps / wall, 1),
                "train_sps": round(env_steps / max(train_time, 1e-9), 1),
                "target_return": cfg.target_return,
                "target_reached": target_hit is not None or (
                    cfg.target_return is not None and final_mean >= cfg.target_return),
                "target_reached_env_steps": target_hit[0] if target_hit else None,
                "target_reached_time_s": round(target_hit[1], 3) if target_hit else None,
                "world_size": self.setup.layout.size,
                "learners": self.setup.layout.learners,
                "actors": self.setup.layout.actors,
                "device": str(self.device),
            }
            if summary["target_reached"] and target_hit is None:
                summary["target_reached_env_steps"] = env_steps
                summary["target_reached_time_s"] = round(wall, 3)
            self.run_dir.write_summary(summary)
            self.logger.final(summary)
        self.logger.close()
        if self.collector is not None:
            self.envs.close()
        return summary or {}
