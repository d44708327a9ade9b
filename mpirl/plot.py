"""``python -m mpirl.plot``: learning curves and scaling curves as PNG files.

  python -m mpirl.plot RUN_DIR [RUN_DIR ...] [-o curves.png]
      Return against env steps and against wall time. Runs whose configs differ only in the
      seed form one curve: their mean, with the spread (min to max) shaded. Evaluation returns
      are used where the runs have them (``--metric train`` for training episodes instead).

  python -m mpirl.plot --scaling bench.csv [-o scaling.png]
      Env steps per second against rank count from ``python -m mpirl.bench sps --csv``, with
      ideal (linear) scaling from the smallest rank count drawn in.

Needs matplotlib: ``pip install -e ".[plot]"``.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

# config fields that do not change what a run learns: runs differing only in these (and the
# seed) are repetitions of one experiment
_NOT_EXPERIMENT = {"seed", "run_dir", "resume", "auto_resume", "override", "config", "quiet",
                   "tensorboard", "torch_threads", "timing", "comm_timeout", "checkpoint_every",
                   "checkpoint_minutes", "keep_checkpoints", "nonfinite", "device", "autograd",
                   "video_every", "wandb", "wandb_project"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("mpirl.plot needs matplotlib: pip install matplotlib "
                         "(or the package's [plot] extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read_run(run_dir: Path, metric: str) -> dict:
    """A run's config and its curve: env steps, wall seconds and returns."""
    cfg_path, progress = run_dir / "config.yaml", run_dir / "progress.csv"
    if not cfg_path.is_file() or not progress.is_file():
        raise SystemExit(f"{run_dir} is not an mpirl run directory (config.yaml and "
                         "progress.csv are needed)")
    cfg = yaml.safe_load(cfg_path.read_text())
    column = "eval_return_mean" if metric == "eval" else "episode_return_mean"
    steps, secs, values = [], [], []
    with open(progress, newline="") as f:
        for row in csv.DictReader(f):
            if row.get(column):
                steps.append(float(row["env_steps"]))
                secs.append(float(row["time_s"] or "nan"))
                values.append(float(row[column]))
    if not steps:
        raise SystemExit(f"{run_dir}/progress.csv has no {column} values")
    return {"dir": run_dir, "config": cfg, "steps": np.array(steps), "time": np.array(secs),
            "value": np.array(values)}


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs that share a config apart from the seed, labelled by what tells the groups apart:
    the algorithm and env, then the settings that differ between runs of the same algorithm
    and env (the settings of different algorithms differ anyway: their defaults)."""
    keys = [tuple(sorted((k, str(v)) for k, v in r["config"].items()
                         if k not in _NOT_EXPERIMENT)) for r in runs]
    kin: dict[tuple[str, str], list[tuple]] = {}  # the keys of each algorithm and env
    for run, key in zip(runs, keys):
        kin.setdefault((run["config"]["algo"], run["config"]["env"]), []).append(key)
    groups: dict[str, list[dict]] = {}
    for run, key in zip(runs, keys):
        cfg = run["config"]
        label = f"{cfg['algo']} {cfg['env']}"
        same = kin[(cfg["algo"], cfg["env"])]
        extra = [f"{k}={v}" for k, v in key
                 if sum((k, v) in kk for kk in same) < len(same) and k not in ("algo", "env")]
        if extra:
            label += " (" + ", ".join(extra) + ")"
        groups.setdefault(label, []).append(run)
    return groups


def _band(runs: list[dict], x_key: str, points: int = 200):
    """Mean, min and max of the runs' curves on a common x grid (up to the shortest run)."""
    end = min(r[x_key][-1] for r in runs)
    start = max(r[x_key][0] for r in runs)
    grid = np.linspace(start, end, points) if end > start else np.array([end])
    ys = np.stack([np.interp(grid, r[x_key], r["value"]) for r in runs])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def plot_curves(run_dirs: list[Path], out: Path, metric: str = "eval") -> Path:
    """Learning curves of the runs (``curves_figure``) as a PNG file."""
    fig = curves_figure(run_dirs, metric)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def curves_figure(run_dirs: list[Path], metric: str = "eval"):
    """Return against env steps (left) and wall time (right): per group of runs that differ
    only in the seed, the mean curve and, for several seeds, the min-to-max band."""
    plt = _pyplot()
    runs = [read_run(Path(d), metric) for d in run_dirs]
    groups = group_runs(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for (label, members), color in zip(groups.items(), plt.rcParams["axes.prop_cycle"]
                                       .by_key()["color"] * 10):
        n = len(members)
        for ax, x_key in zip(axes, ("steps", "time")):
            grid, mean, lo, hi = _band(members, x_key)
            ax.plot(grid, mean, color=color,
                    label=f"{label}: mean of {n} seed{'s' if n > 1 else ''}")
            if n > 1:
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0,
                                label=f"{label}: min to max")
    what = "evaluation return" if metric == "eval" else "training episode return"
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("wall time (s)")
    for ax in axes:
        ax.set_ylabel(f"mean {what}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"learning curves ({len(runs)} run{'s' if len(runs) > 1 else ''})")
    return fig


def plot_scaling(csv_path: Path, out: Path) -> Path:
    """Throughput against rank count (``scaling_figure``) as a PNG file."""
    fig = scaling_figure(csv_path)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def scaling_figure(csv_path: Path):
    """Env steps per second against ranks, measured (points) and ideal (linear from the
    smallest rank count, dashed), one pair per scaling kind in the CSV."""
    plt = _pyplot()
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "ranks" not in rows[0] or "sps" not in rows[0]:
        raise SystemExit(f"{csv_path} is not a 'python -m mpirl.bench sps --csv' file")
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        series.setdefault(r.get("scaling") or "sps", []).append((int(r["ranks"]),
                                                                  float(r["sps"])))
    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    for name, points in series.items():
        points.sort()
        ranks = np.array([p[0] for p in points])
        sps = np.array([p[1] for p in points])
        line, = ax.plot(ranks, sps, "o-", label=f"{name} scaling, measured")
        ax.plot(ranks, sps[0] * ranks / ranks[0], "--", color=line.get_color(), alpha=0.6,
                label=f"{name} scaling, ideal")
    all_ranks = sorted({p[0] for points in series.values() for p in points})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(all_ranks, [str(r) for r in all_ranks])
    ax.set_xlabel("MPI ranks")
    ax.set_ylabel("env steps per second (learning included)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpirl.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run directories")
    parser.add_argument("--scaling", type=Path, help="a CSV from python -m mpirl.bench sps")
    parser.add_argument("--metric", choices=("eval", "train"), default="eval")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG file to write")
    args = parser.parse_args(argv)
    if args.scaling:
        out = plot_scaling(args.scaling, args.output or Path("scaling.png"))
    elif args.runs:
        out = plot_curves(args.runs, args.output or Path("curves.png"), args.metric)
    else:
        parser.error("give run directories, or --scaling bench.csv")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
