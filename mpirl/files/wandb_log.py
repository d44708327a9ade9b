"""Weights & Biases logging for a run (``--wandb``; ``pip install 'mpirl[wandb]'``): the
resolved config, every progress row and evaluation, and videos, from the lead rank only.

Compute nodes usually have no network: ``WANDB_MODE=offline`` (wandb's own variable, honoured
as wandb honours it) writes the W&B run into ``RUN_DIR/wandb/``, for ``wandb sync`` from a
login node later. The W&B run is named after the run directory, grouped by the SLURM job (the
array's job id for an array task), and a resumed run continues the same W&B run (its id is kept
in ``RUN_DIR/wandb-id``).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def slurm_group() -> str | None:
    """The SLURM job array's id (an array task), else the job id, else None."""
    return os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")


class WandbRun:
    def __init__(self, run_path: Path, config: dict, project: str):
        import wandb  # only with --wandb
        self._wandb = wandb
        id_file = run_path / "wandb-id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        self.run = wandb.init(project=project, name=run_path.name, id=run_id, resume="allow",
                              group=slurm_group(), config=config, dir=str(run_path),
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, row: dict, step: int) -> None:
        self.run.log({k: v for k, v in row.items() if k != "env_steps"}, step=step)

    def video(self, path: Path, step: int) -> None:
        self.run.log({"video": self._wandb.Video(str(path), format="mp4")}, step=step)

    def finish(self) -> None:
        self.run.finish()
