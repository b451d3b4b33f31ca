"""Training checkpoints: one safetensors file per epoch, tensors in the body and everything else as JSON.

A checkpoint is written to a temporary name, fsynced and renamed, so a file named
``epoch-NNNN.safetensors`` is always complete; a run killed mid-write leaves only a ``*.tmp`` that
is ignored and cleaned up. Nothing is unpickled: tensors come from safetensors, the rest from JSON.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from cxr.weights import save_tensors, temp_file

STATE_KEY = "state"  # safetensors metadata entry holding the JSON part
CHECKPOINT_NAME = re.compile(r"^epoch-(\d{4,})\.safetensors$")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read."""


def checkpoint_path(folder: str | Path, epoch: int) -> Path:
    """``folder/epoch-NNNN.safetensors``."""
    return Path(folder) / f"epoch-{epoch:04d}.safetensors"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts/lists/tuples of JSON values, tensors and numpy arrays) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, tensors)
    tmp = temp_file(path.parent, path.name)
    try:
        save_tensors(tensors, tmp, metadata={STATE_KEY: json.dumps(encoded)})  # fsynced
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; raises :class:`CheckpointError` if unreadable."""
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
            encoded = json.loads((f.metadata() or {})[STATE_KEY])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}).") from None
    return _decode(encoded, tensors)


def latest_checkpoint(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint in ``folder`` and its state, or None; unreadable files are skipped."""
    for path in sorted(list_checkpoints(folder), reverse=True):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            print(f"warning: skipping {err}", file=sys.stderr)
    return None


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder`` (complete ones only: temporary files do not match)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("epoch-*.safetensors") if CHECKPOINT_NAME.match(p.name))


def epoch_of(path: Path) -> int:
    """The epoch number in a checkpoint file name."""
    match = CHECKPOINT_NAME.match(path.name)
    if not match:
        raise ValueError(f"{path.name} is not a checkpoint file name.")
    return int(match.group(1))


def prune(folder: str | Path, keep_epochs: set[int]) -> None:
    """Delete checkpoints of other epochs, and temporary files left by interrupted writes."""
    for path in list_checkpoints(folder):
        if epoch_of(path) not in keep_epochs:
            path.unlink()
    for tmp in Path(folder).glob(".epoch-*.tmp"):
        tmp.unlink()


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.astype(np.int64), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready copy of ``obj``; tensors move into ``tensors`` and leave a reference behind.

    Tuples and dicts with non-string keys (optimizer states are keyed by int) are tagged so that
    :func:`_decode` gives back the same types.
    """
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
