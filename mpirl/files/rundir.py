"""The run directory: resolved config, progress, checkpoints, final policy weights, summary."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from mpirl.config.fields import ConfigError
from mpirl.config.schema import Config
from mpirl.config.sources import config_from_dict
from mpirl.files.atomic import write_atomically
from mpirl.files.checkpoint import CheckpointStore, load_tensors

if TYPE_CHECKING:
    import torch

POLICY_FILE = "policy.pt"
CHECKPOINT_DIR = "checkpoints"


def default_run_name(cfg: Config) -> str:
    """<algo>-<env>-<SLURM job id[_array task]> inside a SLURM job, else <algo>-<env>-<time>."""
    env = cfg.env.replace("/", "_").replace(":", "_")
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        suffix = f"{job}_{task}" if task and os.environ.get("SLURM_ARRAY_JOB_ID") else job
    else:
        suffix = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.algo}-{env}-{suffix}"


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @staticmethod
    def path_for(cfg: Config) -> Path:
        """--run-dir, or the default name (which, outside SLURM, holds the current time)."""
        return Path(cfg.run_dir) if cfg.run_dir else Path("runs") / default_run_name(cfg)

    def holds_run(self) -> bool:
        """Whether a run got far enough here to leave work behind (checkpoints or results)."""
        return (self.path / "config.yaml").is_file() and (
            bool(self.checkpoints().paths()) or (self.path / "summary.json").is_file() or
            (self.path / POLICY_FILE).is_file())

    @classmethod
    def create(cls, cfg: Config) -> "RunDir":
        """A run directory for a new run; refuses one that holds an earlier run's work."""
        run_dir = cls(cls.path_for(cfg))
        if run_dir.holds_run():
            raise ConfigError(
                f"run directory {run_dir.path} already holds a run; continue it with --resume "
                f"{run_dir.path} (or --auto-resume), or choose another --run-dir")
        run_dir.path.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _atomic_write(self, name: str, write) -> None:
        write_atomically(self.path / name, write)

    def save_config(self, cfg: Config) -> None:
        text = yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode()
        self._atomic_write("config.yaml", lambda f: f.write(text))

    def load_config(self) -> Config:
        p = self.path / "config.yaml"
        if not p.is_file():
            raise ConfigError(f"{self.path} is not an mpirl run directory (no config.yaml)")
        try:
            saved = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"{p} is not a readable run config ({first})") from None
        if not isinstance(saved, dict):
            raise ConfigError(f"{p} is not a run config (it holds no mapping of field: value)")
        cfg = config_from_dict(saved)
        cfg.validate()
        return cfg

    def save_policy(self, model: torch.nn.Module) -> None:
        import torch
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        self._atomic_write(POLICY_FILE, lambda f: torch.save(state, f))

    def load_policy(self, model: torch.nn.Module) -> None:
        """Load weights without executing code from the file (tensors only)."""
        p = self.path / POLICY_FILE
        if not p.is_file():
            raise ConfigError(f"no policy weights in {self.path} ({POLICY_FILE} is missing: "
                              "did the run finish?)")
        try:
            state = load_tensors(p, p)
        except ValueError as e:
            raise ConfigError(f"cannot load policy weights: {e}") from None
        try:
            model.load_state_dict(state)
        except Exception as e:
            first = str(e).splitlines()[0]
            raise ConfigError(f"the policy weights in {p} do not fit the run's policy: {first}") \
                from None

    def checkpoints(self, keep: int = 3) -> CheckpointStore:
        return CheckpointStore(self.path / CHECKPOINT_DIR, keep)

    def write_summary(self, summary: dict) -> None:
        self.write_json("summary.json", summary)

    def write_json(self, name: str, data: dict) -> None:
        text = (json.dumps(data, indent=2) + "\n").encode()
        self._atomic_write(name, lambda f: f.write(text))
