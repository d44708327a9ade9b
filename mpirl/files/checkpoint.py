"""Checkpoint files: everything a run needs to continue, written atomically, read safely.

A checkpoint is one file, ``checkpoints/ckpt-<env steps>.ckpt`` in the run directory::

    b"MPIRLCKP" | sha256 of the payload (32 bytes) | payload length (8 bytes, little-endian)
    | payload: a ``torch.save`` archive of {"meta", "shared", "ranks"}

``meta`` holds the counters, the layout and the resolved config; ``shared`` the state every
learner holds identically (weights, optimizer, counters); ``ranks`` one entry per world rank
(RNG streams, env states, partial statistics). The payload is loaded with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, never code.
numpy arrays are stored as raw bytes plus dtype and shape. The checksum catches truncated and
corrupted files, which the archive format alone does not always notice. Only the lead, which
writes and reads the files, needs torch: ranks that act in numpy hand in numpy state.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpirl.files.atomic import write_atomically

MAGIC = b"MPIRLCKP"
FORMAT = 1
_HEADER = struct.Struct("<8s32sQ")
_NAME = re.compile(r"^ckpt-(\d+)\.ckpt$")


class CheckpointError(Exception):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


# ---------------------------------------------------------------------- safe encoding
def encode(obj: Any) -> Any:
    """Turn nested state into what ``weights_only`` loading accepts: containers, numbers,
    strings, None and CPU tensors. numpy arrays and scalars keep their exact dtype."""
    torch = sys.modules.get("torch")  # a tensor can only come from a process that has it
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": _raw(obj)}
    if isinstance(obj, np.generic):
        return {"__npscalar__": _raw(np.asarray(obj))}
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(encode(v) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _raw(arr: np.ndarray) -> dict:
    if arr.dtype.hasobject:
        raise TypeError("cannot store an object array in a checkpoint")
    import torch
    data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape),
            "data": torch.from_numpy(data.copy())}


def _unraw(d: dict) -> np.ndarray:
    return np.frombuffer(d["data"].numpy().tobytes(), dtype=np.dtype(d["dtype"])) \
        .reshape(d["shape"]).copy()


def decode(obj: Any) -> Any:
    """The inverse of ``encode``."""
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return _unraw(obj["__ndarray__"])
        if set(obj) == {"__npscalar__"}:
            return _unraw(obj["__npscalar__"])[()]
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    return obj


# ---------------------------------------------------------------------- files
@dataclass
class Checkpoint:
    """The content of one checkpoint. ``ranks[i]`` is world rank i's own state (or None)."""

    meta: dict
    shared: dict
    ranks: list
    path: Path | None = field(default=None, compare=False)

    @property
    def env_steps(self) -> int:
        return int(self.meta["env_steps"])


def load_tensors(source: Path | io.BytesIO, path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, numbers, strings and containers,
    never code. Raises ValueError naming ``path`` and what is wrong, in place of torch's advice
    to load again without ``weights_only`` (which would run whatever the file holds)."""
    import torch
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"unsupported GLOBAL (\S+)", str(e))
        what = f" (it names {found.group(1)}, which loading would have to run)" if found else ""
        raise ValueError(f"{path} is not a plain tensor file{what}: refused") from None
    except Exception as e:
        raise ValueError(f"{path} cannot be read: {str(e).splitlines()[0]}") from None


def to_bytes(ckpt: Checkpoint) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save(encode({"format": FORMAT, "meta": ckpt.meta, "shared": ckpt.shared,
                       "ranks": ckpt.ranks}), buf)
    payload = buf.getvalue()
    return _HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload)) + payload


def from_bytes(data: bytes, path: Path) -> Checkpoint:
    """Parse and verify a checkpoint; raises CheckpointError naming ``path``."""
    if len(data) < _HEADER.size or data[:len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path} is not an mpirl checkpoint (bad header)")
    _, digest, length = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if len(payload) != length:
        raise CheckpointError(f"{path} is truncated ({len(payload):,} of {length:,} bytes)")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is corrupted (checksum mismatch)")
    try:
        raw = load_tensors(io.BytesIO(payload), path)
    except ValueError as e:
        raise CheckpointError(f"{path} cannot be loaded safely: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or \
            not {"meta", "shared", "ranks"} <= set(raw):
        raise CheckpointError(f"{path} has an unknown layout (mpirl reads format {FORMAT})")
    return Checkpoint(decode(raw["meta"]), decode(raw["shared"]), decode(raw["ranks"]),
                      path=path)


class CheckpointStore:
    """The checkpoints of one run: newest first, the last ``keep`` kept."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep

    def path_for(self, env_steps: int) -> Path:
        return self.directory / f"ckpt-{env_steps:012d}.ckpt"

    def paths(self) -> list[Path]:
        """Checkpoint files, newest (most env steps) first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    def write(self, ckpt: Checkpoint) -> tuple[Path, int]:
        """Write ``ckpt`` and drop the oldest beyond ``keep``; returns (path, size in bytes)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(ckpt.env_steps)
        data = to_bytes(ckpt)
        write_atomically(path, data)
        for old in self.paths()[self.keep:]:
            old.unlink(missing_ok=True)
        return path, len(data)

    @staticmethod
    def read(path: str | os.PathLike) -> Checkpoint:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
        return from_bytes(data, path)

    def newest_readable(self) -> tuple[Checkpoint, list[str]]:
        """The newest checkpoint that loads, and one note per newer file that did not.
        Raises CheckpointError when none loads."""
        notes: list[str] = []
        for path in self.paths():
            try:
                return self.read(path), notes
            except CheckpointError as e:
                notes.append(str(e))
        if notes:
            raise CheckpointError("no usable checkpoint: " + "; ".join(notes))
        raise CheckpointError(f"no checkpoint in {self.directory}")
