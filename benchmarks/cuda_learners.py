"""Learners on a GPU: does every algorithm learn there, how fast is it against the CPU, and do
its checkpoints resume exactly and load on a machine without one?

    python benchmarks/cuda_learners.py [--device cuda] [--phases learn,speed,resume]

Three phases, each a set of ``mpirun ... python -m mpirl.train`` jobs run from the repository
root (``mpirun`` from PATH, or ``--mpirun``):

- ``learn``: each algorithm's learning check of the test suite (fixed seed, target return) with
  its learners on ``--device``, ``--jobs`` jobs at a time; prints whether it reached the
  target, after how many env steps, and its learners' time per update.
- ``speed``: a few jobs where the learner's work is large (the Atari CNN presets as they are,
  ``--precision auto``, and in bf16; SAC at the zoo's settings and at 4x its batch; DQN), on
  ``--baseline`` and on ``--device`` in turn, every case once a round (``--rounds``), one job
  at a time; prints steps/s and the learners' seconds per update side by side.
- ``resume``: PPO and SAC runs stopped with SIGTERM after their first checkpoint and resumed
  on ``--device``, against the same runs uninterrupted (progress rows and final weights
  compared); the resumed run's checkpoint continued on the CPU (``--override device``); its
  policy evaluated with no GPU visible.

Every result also goes to ``--out``/results.json as it comes. ``--quick`` cuts every budget
(a rehearsal of the script on a machine without a GPU: ``--device cpu --quick``).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUIET = ["--quiet", "--no-tensorboard"]
NOVEL = "mpirl/CartPoleNoVel-v1"
TIMING_COLUMNS = {"time_s", "sps", "learner_wait_rollouts", "learner_wait_learners",
                  "learner_gradient", "actor_wait_weights", "updates_per_s"}

# name, ranks, arguments: the learning checks of tests/ (same seeds and targets)
LEARN = [
    ("ppo CartPole", 4, ["--algo", "ppo", "--seed", "0", "--target-return", "475"]),
    ("a2c CartPole", 4, ["--algo", "a2c", "--seed", "1", "--target-return", "475"]),
    ("dqn CartPole", 4, ["--algo", "dqn", "--seed", "0", "--target-return", "475"]),
    ("impala CartPole", 4, ["--algo", "impala", "--seed", "0", "--target-return", "475"]),
    ("sac Pendulum", 2, ["--algo", "sac", "--env", "Pendulum-v1", "--learners", "2",
                         "--total-steps", "20000", "--eval-every", "1000", "--lr", "1e-3",
                         "--target-return", "-200", "--seed", "0"]),
    ("td3 Pendulum", 2, ["--algo", "td3", "--env", "Pendulum-v1", "--learners", "2",
                         "--total-steps", "20000", "--eval-every", "1000",
                         "--target-return", "-200", "--seed", "0"]),
    ("d4pg Pendulum", 2, ["--algo", "d4pg", "--env", "Pendulum-v1", "--learners", "2",
                          "--total-steps", "50000", "--eval-every", "1000", "--lr", "1e-3",
                          "--v-min", "-1500", "--v-max", "0", "--target-return", "-200",
                          "--seed", "0"]),
    ("r2d2 CartPoleNoVel", 4, ["--algo", "r2d2", "--env", NOVEL, "--seed", "1",
                               "--target-return", "475"]),
    ("ppo-lstm CartPoleNoVel", 4, ["--algo", "ppo", "--env", NOVEL, "--recurrent", "lstm",
                                   "--seed", "1", "--total-steps", "300000",
                                   "--target-return", "475"]),
    ("ppo+rnd MountainCar", 4, ["--config", "presets/ppo-rnd-mountaincar.yaml", "--seed", "2",
                                "--target-return", "-190"]),
]

# name, ranks, arguments: jobs whose learners have real work per update
SPEED = [
    ("ppo Pong (CNN)", 8, ["--config", "presets/ppo-atari.yaml", "--envs-per-actor", "4",
                           "--total-steps", "10752", "--eval-every", "0"]),
    ("ppo Pong (CNN, bf16)", 8, ["--config", "presets/ppo-atari.yaml", "--envs-per-actor",
                                    "4", "--total-steps", "10752", "--eval-every", "0",
                                    "--precision", "bf16"]),
    ("ppo Pong minibatch 896 (CNN)", 8, ["--config", "presets/ppo-atari.yaml",
                                         "--envs-per-actor", "4", "--batch-size", "896",
                                         "--total-steps", "10752", "--eval-every", "0"]),
    ("ppo Pong minibatch 896 (CNN, bf16)", 8, ["--config", "presets/ppo-atari.yaml",
                                               "--envs-per-actor", "4", "--batch-size", "896",
                                               "--total-steps", "10752", "--eval-every", "0",
                                               "--precision", "bf16"]),
    ("impala Pong (CNN)", 8, ["--config", "presets/impala-atari.yaml",
                              "--total-steps", "16000", "--eval-every", "0"]),
    ("impala Pong (CNN, bf16)", 8, ["--config", "presets/impala-atari.yaml",
                                    "--total-steps", "16000", "--eval-every", "0",
                                    "--precision", "bf16"]),
    ("sac Pendulum (256x256)", 2, ["--config", "presets/sac-pendulum.yaml",
                                   "--total-steps", "3000", "--eval-every", "0"]),
    ("sac Pendulum batch 1024 (256x256)", 2, ["--config", "presets/sac-pendulum.yaml",
                                               "--batch-size", "1024", "--total-steps", "2000",
                                               "--eval-every", "0"]),
    ("dqn CartPole", 4, ["--algo", "dqn", "--total-steps", "20000", "--eval-every", "0"]),
]

# name, ranks, arguments, budget: runs stopped after their first checkpoint and resumed
RESUME = [
    ("ppo CartPole", 3, ["--algo", "ppo", "--total-steps", "16384", "--checkpoint-every", "8",
                         "--eval-every", "8192", "--seed", "3"], 16384),
    ("sac Pendulum", 2, ["--algo", "sac", "--env", "Pendulum-v1", "--learners", "2",
                         "--total-steps", "3000", "--learning-starts", "500",
                         "--checkpoint-every", "1000", "--checkpoint-replay",
                         "--eval-every", "1500", "--eval-episodes", "2", "--seed", "3"], 3000),
]


def quick(args: list[str]) -> list[str]:
    """--quick: budgets cut (``--total-steps`` a tenth, targets dropped) for a rehearsal."""
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--target-return":
            skip = True
            continue
        if i and args[i - 1] == "--total-steps":
            a = str(max(2000, int(a) // 10))
        out.append(a)
    if "--total-steps" not in out:
        out += ["--total-steps", "6000"]
    return out


class Runner:
    def __init__(self, opts):
        self.opts = opts
        self.out = pathlib.Path(opts.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs = pathlib.Path(opts.runs or self.out / "runs").resolve()
        self.results: dict[str, list] = {"learn": [], "speed": [], "resume": []}

    def chosen(self, name: str) -> bool:
        cases = self.opts.cases
        return not cases or any(name.startswith(c) for c in cases.split(","))

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))

    def job(self, ranks: int, args: list[str], timeout: float, env: dict | None = None
            ) -> subprocess.CompletedProcess:
        cmd = [self.opts.mpirun, "-n", str(ranks), sys.executable, "-m", "mpirl.train", *args]
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(cmd, 124, e.stdout or "", f"timed out\n{e.stderr}")

    def train(self, tag: str, ranks: int, args: list[str], device: str, timeout: float) -> dict:
        run = self.runs / tag
        shutil.rmtree(run, ignore_errors=True)
        args = quick(args) if self.opts.quick else args
        t0 = time.monotonic()
        res = self.job(ranks, [*args, "--device", device, "--run-dir", str(run), *QUIET],
                       timeout)
        row = {"tag": tag, "device": device, "ranks": ranks, "rc": res.returncode,
               "wall_s": round(time.monotonic() - t0, 1), "args": args}
        if res.returncode != 0:
            row["error"] = (res.stderr or res.stdout)[-3000:]
        row.update(read_run(run))
        return row

    # ------------------------------------------------------------------ phases
    def learn(self) -> None:
        dev = self.opts.device
        with concurrent.futures.ThreadPoolExecutor(self.opts.jobs) as pool:
            futures = {pool.submit(self.train, f"learn-{i}", ranks, args, dev, 420): name
                       for i, (name, ranks, args) in enumerate(LEARN) if self.chosen(name)}
            for f in concurrent.futures.as_completed(futures):
                row = {"name": futures[f], **f.result()}
                self.results["learn"].append(row)
                self.save()
                print(f"learn  {row['name']:<24} {fmt_learn(row)}", flush=True)

    def speed(self) -> None:
        devices = [d for d in (self.opts.baseline, self.opts.device) if d != "none"]
        cases = [case for case in SPEED if self.chosen(case[0])]
        for r in range(self.opts.rounds):  # interleaved: every case and device once a round
            for name, ranks, args in cases:
                for dev in devices:
                    row = {"name": name, "round": r,
                           **self.train(f"speed-{dev}", ranks, args, dev, 300)}
                    self.results["speed"].append(row)
                    self.save()
                    print(f"speed  {name:<24} {dev:<5} round {r}  {fmt_speed(row)}",
                          flush=True)

    def resume(self) -> None:
        for name, ranks, args, budget in filter(lambda case: self.chosen(case[0]), RESUME):
            row = {"name": name}
            try:
                row.update(self._resume_one(name, ranks, args, budget))
            except Exception as e:  # noqa: BLE001 - reported, then the next case
                row["error"] = f"{type(e).__name__}: {e}"
            self.results["resume"].append(row)
            self.save()
            print(f"resume {name:<24} {json.dumps({k: v for k, v in row.items() if k != 'name'})}",
                  flush=True)

    def _resume_one(self, name, ranks, args, budget) -> dict:
        dev, env = self.opts.device, dict(os.environ, PYTHONUNBUFFERED="1")
        tag = name.split()[0]
        whole, parts = self.runs / f"whole-{tag}", self.runs / f"parts-{tag}"
        for d in (whole, parts):
            shutil.rmtree(d, ignore_errors=True)
        common = [*args, "--device", dev, *QUIET]
        res = self.job(ranks, [*common, "--run-dir", str(whole)], 300)
        if res.returncode:
            return {"whole_rc": res.returncode, "error": res.stderr[-2000:]}
        cmd = [self.opts.mpirun, "-n", str(ranks), sys.executable, "-m", "mpirl.train",
               *common, "--run-dir", str(parts)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while not list((parts / "checkpoints").glob("ckpt-*.ckpt")):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                return {"error": "no checkpoint before the run ended: "
                        + proc.communicate()[1][-2000:]}
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        stopped_at = int(learning_rows(parts)[-1]["env_steps"]) if learning_rows(parts) else 0
        res = self.job(ranks, ["--resume", str(parts)], 300)
        out = {"stop_rc": proc.returncode, "stopped_at": stopped_at, "budget": budget,
               "resume_rc": res.returncode}
        if res.returncode:
            out["error"] = res.stderr[-2000:]
            return out
        out["rows_equal"] = learning_rows(parts) == learning_rows(whole)
        out["weights_equal"], out["max_weight_diff"] = compare_weights(parts, whole)
        # the GPU run's checkpoint, continued on the CPU
        more = str(budget + budget // 2)
        res = self.job(ranks, ["--resume", str(parts), "--override", "device", "total_steps",
                               "--device", "cpu", "--total-steps", more], 300)
        out["continued_on_cpu_rc"] = res.returncode
        if res.returncode:
            out["continued_on_cpu_error"] = res.stderr[-1500:]
        else:
            out["continued_on_cpu_summary_device"] = read_run(parts).get("device")
        # the policy evaluated where no GPU is visible
        res = subprocess.run([sys.executable, "-m", "mpirl.evaluate", str(whole), "--json",
                              "--episodes", "3"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, env=dict(env, CUDA_VISIBLE_DEVICES=""))
        out["evaluate_without_gpu_rc"] = res.returncode
        out["evaluate_without_gpu"] = (res.stdout.strip() or res.stderr[-1500:])[-400:]
        return out


# ---------------------------------------------------------------------- reading a run
def read_run(run: pathlib.Path) -> dict:
    out = {}
    try:
        s = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return out
    for k in ("env_steps", "sps", "train_sps", "updates", "iterations", "device", "target_reached",
              "target_reached_env_steps", "target_reached_time_s", "final_eval_return",
              "wall_time_s", "skipped_updates"):
        out[k] = s.get(k)
    evals = [float(r["eval_return_mean"]) for r in learning_rows(run)
             if r.get("eval_return_mean")]
    out["best_eval"] = max(evals) if evals else None
    try:
        timing = json.loads((run / "timing.json").read_text())
        out["verdict"] = timing.get("verdict")
        roles = timing["breakdown"]
        t = next(v for role, v in roles.items() if "learner" in role)
        cats = t["categories"]
        # seconds are the mean over the role's ranks: one learner's
        work = sum(cats.get(k, {}).get("seconds", 0.0) for k in ("gradient", "optimizer"))
        out["learner_work_s"] = round(work, 3)
        # updates per learner: gradient steps (off-policy, PPO's minibatches) or batches
        updates = s.get("updates") or s.get("iterations")
        if updates:
            out["ms_per_update"] = round(1000 * out["learner_work_s"] / updates, 3)
    except (OSError, ValueError, KeyError, StopIteration):
        pass
    return out


def learning_rows(run: pathlib.Path) -> list[dict]:
    try:
        with open(run / "progress.csv") as f:
            return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}
                    for r in csv.DictReader(f)]
    except OSError:
        return []


def compare_weights(a: pathlib.Path, b: pathlib.Path) -> tuple[bool, float]:
    import torch
    wa = torch.load(a / "policy.pt", weights_only=True, map_location="cpu")
    wb = torch.load(b / "policy.pt", weights_only=True, map_location="cpu")
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    return all(torch.equal(wa[k], wb[k]) for k in wa), diff


def fmt_learn(row: dict) -> str:
    if row["rc"]:
        return f"rc {row['rc']}: {row.get('error', '')[-600:]}"
    return (f"device {row.get('device')}  target reached {row.get('target_reached')} at "
            f"{row.get('target_reached_env_steps')} steps  best eval {row.get('best_eval')}  "
            f"{row.get('sps')} steps/s  {row.get('ms_per_update')} ms/update  "
            f"wall {row['wall_s']} s")


def fmt_speed(row: dict) -> str:
    if row["rc"]:
        return f"rc {row['rc']}: {row.get('error', '')[-600:]}"
    return (f"{row.get('sps')} steps/s  {row.get('ms_per_update')} ms/update over "
            f"{row.get('updates') or row.get('iterations')} updates  wall {row['wall_s']} s\n"
            f"       verdict: {' / '.join(row.get('verdict') or [])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--baseline", default="cpu", help="speed: the device each job also runs "
                   "on, in turn with --device ('none': only --device)")
    p.add_argument("--phases", default="learn,speed,resume")
    p.add_argument("--jobs", type=int, default=4, help="learn: jobs at a time")
    p.add_argument("--rounds", type=int, default=2, help="speed: A B rounds")
    p.add_argument("--out", default="runs/cuda-learners")
    p.add_argument("--runs", help="where the run directories go (default: OUT/runs)")
    p.add_argument("--mpirun", default=shutil.which("mpirun") or "mpirun")
    p.add_argument("--cases", help="only the cases whose names start with one of these "
                   "(comma-separated), e.g. 'sac,impala'")
    p.add_argument("--quick", action="store_true", help="cut every budget (a rehearsal)")
    opts = p.parse_args()
    runner = Runner(opts)
    for phase in opts.phases.split(","):
        t0 = time.monotonic()
        getattr(runner, phase)()
        print(f"phase {phase}: {time.monotonic() - t0:.0f} s", flush=True)
    runner.save()


if __name__ == "__main__":
    main()
