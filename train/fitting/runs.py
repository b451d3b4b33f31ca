"""The run folder's own state: ``run.json`` (a new run's config, or the one a resumed run continues) and the
newest checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from train.fitting import checkpoint as ckpt
from train.fitting import distributed
from train.fitting.config import RUN_FILE, RUNTIME_FIELDS, TrainConfig, TrainError, validate


def run_config(cfg: TrainConfig, resume: bool, world: distributed.World) -> TrainConfig:
    """A resumed run's saved config (runtime fields from ``cfg``); a new run's ``cfg``, if --out is free."""
    path = Path(cfg.out) / RUN_FILE
    if resume:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainError(f"No run to resume in {cfg.out} ({RUN_FILE} is missing).") from None
        return resumed_config(saved, cfg)
    if path.exists():
        raise TrainError(f"{cfg.out} already holds a run: continue it with --resume, or choose another --out.")
    distributed.barrier(world)  # every rank has looked before rank 0 may write run.json
    return cfg


def write_run_config(cfg: TrainConfig, out: Path) -> None:
    """Save the run's config as ``OUT/run.json``, once the data and model are known to work."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / RUN_FILE)


def latest_state(checkpoints: Path, world: distributed.World) -> dict[str, Any] | None:
    """The newest readable checkpoint's state (None: start from scratch); every rank loads the same file."""
    found = ckpt.latest_checkpoint(checkpoints) if world.is_main else None
    path = distributed.broadcast_object(found[0] if found else None, world)
    if path is None:
        return None
    return found[1] if found else ckpt.load_checkpoint(path)


def resumed_config(saved: dict[str, Any], given: TrainConfig) -> TrainConfig:
    """The saved config, with the run-independent fields of ``given`` (empty paths keep the saved ones)."""
    runtime = {field: getattr(given, field) for field in RUNTIME_FIELDS}
    runtime["data_dir"] = given.data_dir or saved["data_dir"]
    runtime["cache_dir"] = given.cache_dir or saved["cache_dir"]
    return validate(dataclasses.replace(TrainConfig(**saved), **runtime))


def check_resume_options(given: dict[str, Any]) -> None:
    """On --resume the saved run decides; options that would change it (not where or how fast) are refused."""
    path = Path(given["out"]) / RUN_FILE
    if not path.is_file():
        return  # fit says there is no run to resume
    saved = json.loads(path.read_text(encoding="utf-8"))
    changed = [
        f"--{key.replace('_', '-')} (saved {saved.get(key)!r}, given {value!r})"
        for key, value in given.items()
        if key not in RUNTIME_FIELDS | {"out"} and saved.get(key) != value
    ]
    if changed:
        raise TrainError(f"--resume continues the saved run; these options differ from it: {', '.join(changed)}.")
