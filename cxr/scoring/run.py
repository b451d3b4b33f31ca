"""One scoring run: what to skip, which engine, parts as they come, the consolidated file at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cxr.scoring.inputs import ScoreInput
from cxr.scoring.local import default_workers, local_batches
from cxr.scoring.ray_engine import RayOptions, ray_batches
from cxr.scoring.rows import score_schema
from cxr.scoring.store import ScoreStore
from cxr.scoring.work import CamWriter
from cxr.serving import ServedModel

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScoreSummary:
    """What a run did: inputs seen, rows added (with errors among them), inputs skipped as already scored."""

    out: Path
    inputs: int
    added: int
    errors: int
    skipped: int
    seconds: float
    total_rows: int

    @property
    def images_per_second(self) -> float:
        return (self.added - self.errors) / self.seconds if self.seconds else 0.0


def cxr_version() -> str:
    """The installed cxr's version (pyproject.toml is its one source)."""
    try:
        return version("cxr")
    except PackageNotFoundError:
        return "unknown"


def score_metadata(served: ServedModel) -> dict[str, Any]:
    """Facts of the whole file: cxr version, the weights' provenance and config, labels, thresholds, reliability."""
    config = served.config
    return {
        "format_version": 1,
        "cxr_version": cxr_version(),
        "weights": served.summary(),
        "config": config.to_dict(),
        "labels": list(config.labels),
        "thresholds": dict(zip(config.labels, config.thresholds, strict=True)),
        "label_reliability": {
            label: served.predictor.reliability.get(label, "not evaluated") for label in config.labels
        },
        "precision": served.predictor.precision,
        "backend": served.predictor.backend_name,
        "columns": "path, sha256, error, p_<label> per label, positive, at_chance, empty_maps, input_check, cam_files, "
        "weights_sha256, then the manifest's columns (see cxr.scoring.rows)",
    }


def score(
    items: Sequence[ScoreInput],
    out: str | Path,
    served: ServedModel,
    *,
    engine: str = "local",
    batch_size: int = 16,
    workers: int | None = None,
    cams: CamWriter | None = None,
    ray: RayOptions | None = None,
    progress: bool = True,
) -> ScoreSummary:
    """Score ``items`` into ``out`` (resuming it), one atomic part per batch, then consolidate.

    ``workers``: decoding processes of the local engine (default :func:`cxr.scoring.local.default_workers`).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    extra_columns = list(items[0].extra) if items else []
    store = ScoreStore(
        out, score_schema(served.config.labels, extra_columns), score_metadata(served), served.weights_sha256
    )
    done = store.done()
    start = time.perf_counter()
    batches: Iterator[tuple[int, list[dict]]]
    if engine == "local":
        if workers is None:
            workers = default_workers(served.predictor.device.type == "cuda")
        batches = local_batches(items, served, done, batch_size=batch_size, workers=workers, cams=cams)
    else:
        batches = ray_batches(items, served, done, ray or RayOptions(), batch_size=batch_size, cams=cams)
    added = errors = consumed = 0
    with tqdm(total=len(items), unit="img", desc="score", disable=not progress, dynamic_ncols=True) as bar:
        for n, rows in batches:
            store.write_part(rows)
            consumed += n
            added += len(rows)
            errors += sum(row["error"] is not None for row in rows)
            bar.update(n)
    seconds = time.perf_counter() - start
    table = store.consolidate()
    return ScoreSummary(Path(out), len(items), added, errors, consumed - added, seconds, table.num_rows)
