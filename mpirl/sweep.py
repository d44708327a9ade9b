"""``python -m mpirl.sweep``: hyper-parameter sweeps on a batch system.

  python -m mpirl.sweep SPEC.yaml [--task K] [--list]
      Run one task of the sweep the spec describes (``--task``, else ``SLURM_ARRAY_TASK_ID``),
      or every task in turn when neither is given. A task is one combination of values and
      one seed; it trains in ``RUNS/<combination>/seed-<seed>`` with ``--auto-resume``, so a
      requeued array task continues its run. Launch it as an MPI program like ``mpirl.train``
      (``srun --mpi=pmi2 python -m mpirl.sweep SPEC.yaml``; ``slurm/sweep.sbatch``).
      ``--list`` prints the tasks and the ``--array`` range to submit.

  python -m mpirl.sweep summarize RUNS [--csv F]
      The combinations ranked by their mean final evaluation over seeds, with the spread.
      ``python -m mpirl.plot RUNS/*/seed-*`` draws one curve per combination.

The spec (YAML)::

    runs: runs/ppo-lr-epochs     # where the runs go
    config:                      # the fields every run shares (or a config file's path)
      algo: ppo
      total_steps: 50000
    grid:                        # every combination of these ...
      lr: [0.001, 0.0003]
      n_epochs: [4, 10]
    seeds: [0, 1]                # ... with each seed

or, instead of ``grid``, ``random:`` with ``trials: N`` and per field a list to choose from,
``{uniform: [low, high]}``, ``{loguniform: [low, high]}`` or ``{int: [low, high]}``: N
combinations drawn once from ``sample_seed`` (0), the same in every task.

``adaptive:`` (same rules as ``random:``, with ``trials: N`` and ``direction: maximize`` or
``minimize`` of the final evaluation return) lets Optuna choose each trial's values from the
results so far (``pip install 'mpirl[sweep]'``). Its study lives in ``RUNS/optuna.journal``, a
journal file on the shared file system that needs no database server, so array tasks running
at once share it; each task runs one trial (with the first of ``seeds``) in
``RUNS/trial-<n>,<values>/seed-<seed>``, and a requeued task continues its own trial.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mpirl.config.fields import ConfigError


# ---------------------------------------------------------------------- the spec
def load_spec(path: str | os.PathLike) -> dict:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read sweep spec {path}: {e}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"sweep spec {path} must hold a mapping")
    unknown = set(spec) - {"runs", "config", "grid", "random", "adaptive", "trials", "seeds",
                           "sample_seed", "direction"}
    if unknown:
        raise ConfigError(f"sweep spec {path}: unknown key(s) {', '.join(sorted(unknown))}")
    if sum(k in spec for k in ("grid", "random", "adaptive")) != 1:
        raise ConfigError(f"sweep spec {path}: give either grid:, random: or adaptive: (the "
                          "last two with trials:)")
    if spec.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ConfigError(f"sweep spec {path}: direction: maximize or minimize")
    if "runs" not in spec:
        raise ConfigError(f"sweep spec {path}: runs: (the directory of the runs) is missing")
    return spec


def _draw(rule: Any, rng: np.random.Generator, name: str) -> Any:
    if isinstance(rule, list):
        return rule[int(rng.integers(len(rule)))]
    if isinstance(rule, dict) and len(rule) == 1:
        (kind, (low, high)), = rule.items()
        if kind == "uniform":
            return float(rng.uniform(low, high))
        if kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if kind == "int":
            return int(rng.integers(low, high + 1))
    raise ConfigError(f"random: {name}: give a list, or {{uniform|loguniform|int: [low, high]}}")


def _trials(spec: dict) -> int:
    trials = spec.get("trials")
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError("random: and adaptive: need trials: N (a positive integer)")
    return trials


def combinations(spec: dict) -> list[dict]:
    """The sweep's combinations of values, in a fixed order (adaptive: not known before)."""
    if "adaptive" in spec:
        return [{} for _ in range(_trials(spec))]
    if "grid" in spec:
        names = list(spec["grid"])
        values = [v if isinstance(v, list) else [v] for v in spec["grid"].values()]
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]
    trials = _trials(spec)
    rng = np.random.default_rng(spec.get("sample_seed", 0))
    return [{name: _draw(rule, rng, name) for name, rule in spec["random"].items()}
            for _ in range(trials)]


def _label(combo: dict) -> str:
    """A directory name for a combination: lr=0.001,n_epochs=4."""
    def text(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return ",".join(f"{k}={text(v)}" for k, v in combo.items()).replace("/", "_") or "base"


def tasks(spec: dict) -> list[tuple[dict, int, Path]]:
    """(combination, seed, run directory) of every task, combination by combination."""
    seeds = spec.get("seeds", [0])
    runs = Path(spec["runs"])
    if "adaptive" in spec:  # one trial per task; its values and directory come at its start
        return [({}, seeds[0], runs / f"trial-of-task-{i}") for i in range(_trials(spec))]
    return [(combo, seed, runs / _label(combo) / f"seed-{seed}")
            for combo in combinations(spec) for seed in seeds]


def task_values(spec: dict, combo: dict, seed: int, run_dir: Path) -> dict:
    """The config values of one task: the spec's config (a mapping, or a config file's path),
    the combination, the seed, its run directory, resumed if it holds a checkpoint."""
    base = spec.get("config") or {}
    values = {"config": base} if isinstance(base, str) else dict(base)
    return {**values, **combo, "seed": seed, "run_dir": str(run_dir), "auto_resume": True}


# ---------------------------------------------------------------------- adaptive
def _distribution(rule: Any, name: str):
    import optuna.distributions as d
    if isinstance(rule, list):
        return d.CategoricalDistribution(rule)
    if isinstance(rule, dict) and len(rule) == 1:
        (kind, (low, high)), = rule.items()
        if kind in ("uniform", "loguniform"):
            return d.FloatDistribution(low, high, log=kind == "loguniform")
        if kind == "int":
            return d.IntDistribution(low, high)
    raise ConfigError(f"adaptive: {name}: give a list, or {{uniform|loguniform|int: [low, high]}}")


def _study(spec: dict):
    try:
        import optuna
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        raise ConfigError("adaptive: sweeps need Optuna: pip install 'mpirl[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = Path(spec["runs"])
    runs.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(runs / "optuna.journal")))
    return optuna.create_study(study_name=runs.name, storage=storage, load_if_exists=True,
                               direction=spec.get("direction", "maximize"))


def adaptive_trial(spec: dict, task: int) -> tuple[int, dict, Path]:
    """(trial number, values, run directory) of this task's trial: asked of the study the
    first time, read back when the task is requeued (lead rank only)."""
    runs = Path(spec["runs"])
    record = runs / "tasks" / f"{task}.json"
    if record.exists():
        saved = json.loads(record.read_text())
        return saved["trial"], saved["values"], Path(saved["run_dir"])
    study = _study(spec)
    trial = study.ask({name: _distribution(rule, name)
                       for name, rule in spec["adaptive"].items()})
    seed = spec.get("seeds", [0])[0]
    run_dir = runs / f"trial-{trial.number},{_label(trial.params)}" / f"seed-{seed}"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"trial": trial.number, "values": trial.params,
                                  "run_dir": str(run_dir)}))
    return trial.number, dict(trial.params), run_dir


def run_adaptive(spec: dict, task: int) -> None:
    """One trial on every rank: the lead asks the study, all train, the lead tells it."""
    from mpirl import comm, train
    world = comm.world()
    error, asked = None, None
    if world.Get_rank() == 0:
        try:
            asked = adaptive_trial(spec, task)
        except ConfigError as e:
            error = str(e)
            print(f"mpirl: error: {e}", file=sys.stderr, flush=True)
    error, asked = comm.broadcast_object(world, (error, asked))
    if error:
        raise ConfigError(error)
    number, values, run_dir = asked
    train(task_values(spec, values, spec.get("seeds", [0])[0], run_dir))
    if world.Get_rank() == 0:
        import optuna
        study = _study(spec)
        if study.trials[number].state == optuna.trial.TrialState.RUNNING:  # (not told yet)
            result = json.loads((run_dir / "summary.json").read_text())["final_eval_return"]
            study.tell(number, result)


# ---------------------------------------------------------------------- summary
def summarize(runs: Path) -> list[dict]:
    """One row per combination (the runs under ``runs`` that differ only in their seed),
    best mean final evaluation first."""
    groups: dict[str, list[float]] = {}
    for summary in sorted(runs.glob("**/summary.json")):
        name = str(summary.parent.parent.relative_to(runs))
        groups.setdefault(name, []).append(
            float(json.loads(summary.read_text())["final_eval_return"]))
    rows = [{"combination": name, "seeds": len(v), "mean": round(float(np.mean(v)), 2),
             "std": round(float(np.std(v)), 2), "min": round(min(v), 2), "max": round(max(v), 2)}
            for name, v in groups.items()]
    rows.sort(key=lambda r: -r["mean"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def _print(rows: list[dict]) -> None:
    cols = ["rank", "combination", "seeds", "mean", "std", "min", "max"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.rjust(widths[c]) if c != "combination" else c.ljust(widths[c])
                    for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) if c != "combination"
                        else str(r[c]).ljust(widths[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["summarize"]:
        parser = argparse.ArgumentParser(prog="python -m mpirl.sweep summarize")
        parser.add_argument("runs", help="the sweep's runs: directory")
        parser.add_argument("--csv", default=None, help="also write the table to this file")
        args = parser.parse_args(argv[1:])
        rows = summarize(Path(args.runs))
        if not rows:
            print(f"mpirl: error: no finished runs (summary.json) under {args.runs}",
                  file=sys.stderr)
            return 2
        print(f"final evaluation return by combination, over seeds ({args.runs})")
        _print(rows)
        if args.csv:
            import csv
            with open(args.csv, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        return 0
    parser = argparse.ArgumentParser(prog="python -m mpirl.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="the sweep's YAML spec")
    parser.add_argument("--task", type=int, default=None,
                        help="the task to run (default: SLURM_ARRAY_TASK_ID, else all)")
    parser.add_argument("--list", action="store_true", help="print the tasks and stop")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        all_tasks = tasks(spec)
    except ConfigError as e:
        print(f"mpirl: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for i, (combo, seed, run_dir) in enumerate(all_tasks):
            print(f"{i:>4}  {run_dir}")
        print(f"sbatch --array=0-{len(all_tasks) - 1} slurm/sweep.sbatch {args.spec}")
        return 0
    task = args.task
    if task is None and os.environ.get("SLURM_ARRAY_TASK_ID"):
        task = int(os.environ["SLURM_ARRAY_TASK_ID"])
    if task is not None and not 0 <= task < len(all_tasks):
        print(f"mpirl: error: task {task} is not in this sweep: it has {len(all_tasks)} tasks "
              f"(0-{len(all_tasks) - 1})", file=sys.stderr)
        return 2
    from mpirl import train
    from mpirl.train import RunStopped
    try:
        for index in ([task] if task is not None else range(len(all_tasks))):
            if "adaptive" in spec:
                run_adaptive(spec, index)
                continue
            combo, seed, run_dir = all_tasks[index]
            train(task_values(spec, combo, seed, run_dir))
    except ConfigError:  # reported by the lead rank
        return 2
    except RunStopped as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
