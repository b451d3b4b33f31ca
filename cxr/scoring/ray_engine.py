"""The Ray engine: Ray Data's batch-inference pattern, writing through the same store as the local engine.

A dataset of paths goes through ``map_batches`` with a callable class, so each actor loads the model once and
then reads, hashes, decodes and scores its batches (``concurrency`` actors, ``num_gpus`` each). The driver only
receives the small rows and writes them as the same atomic parts, so resume and the consolidated file work as
they do locally. The files must be readable under the same paths on every node (a shared filesystem or the
same mount); the weights are loaded by each actor from the driver's choice and checked against its SHA-256.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch

from cxr.scoring.inputs import ScoreInput
from cxr.scoring.rows import rows_table, score_schema
from cxr.scoring.work import CamWriter, load_input, rows_for
from cxr.serving import ServedModel, load_served_model

_SKIPPED = "_skipped"  # rows the actor found already scored: counted by the driver, not written


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs, and how its actors load the same weights as the driver."""

    address: str | None = None  # None: a local cluster started for this run (or RAY_ADDRESS)
    workers: int = 2  # actors, each with its own copy of the model
    num_gpus_per_worker: float = 0.0
    weights: str | None = None  # what the driver was given (--weights / $CXR_WEIGHTS / the documented order)
    revision: str | None = None


def actor_weights(served: ServedModel, options: RayOptions) -> tuple[str | None, str | None]:
    """(source, revision) that make an actor load exactly the driver's weights."""
    choice = served.choice
    if choice.kind == "hub":
        return choice.location, choice.commit or choice.revision
    if choice.folder is not None:
        return str(choice.folder), None
    return options.weights, options.revision  # demonstration weights: rebuilt the same way, then checked


class ScoreActor:
    """Loads the model once per actor; called with batches of ``{"path", "extra"}`` columns."""

    def __init__(
        self,
        weights: str | None,
        revision: str | None,
        expected_sha256: str,
        predictor_options: dict[str, Any],
        done: set[tuple[str, str]],
        batch_size: int,
        cams: dict[str, Any] | None,
    ) -> None:
        self.served = load_served_model(weights, revision, environ={}, strict_explicit=True, **predictor_options)
        if self.served.weights_sha256 != expected_sha256:
            raise RuntimeError(
                f"a Ray worker loaded weights with SHA-256 {self.served.weights_sha256[:12]}…, not the driver's "
                f"{expected_sha256[:12]}…: give --weights a folder or Hub repo every node can read."
            )
        self.done, self.batch_size = done, batch_size
        self.cams = CamWriter(**cams) if cams else None
        self.labels = self.served.config.labels

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        items = [ScoreInput(str(p), json.loads(e)) for p, e in zip(batch["path"], batch["extra"], strict=True)]
        loaded = [load_input(item, self.done) for item in items]
        rows = rows_for(loaded, self.served, self.batch_size, self.cams)
        schema = score_schema(self.labels, list(items[0].extra) if items else [])
        table = rows_table(rows, schema)
        skipped = rows_table([{"path": x.item.path, **x.item.extra} for x in loaded if x.skipped], schema)
        flags = [False] * table.num_rows + [True] * skipped.num_rows
        return pa.concat_tables([table, skipped]).append_column(_SKIPPED, pa.array(flags))


def ray_batches(
    items: Sequence[ScoreInput],
    served: ServedModel,
    done: set[tuple[str, str]],
    options: RayOptions,
    *,
    batch_size: int,
    cams: CamWriter | None = None,
) -> Iterator[tuple[int, list[dict]]]:
    """(inputs consumed, rows) per batch from Ray Data actors; starts a local cluster when none is given."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in input order, as locally
        dataset = ray.data.from_items([{"path": i.path, "extra": json.dumps(i.extra)} for i in items])
        predictor = served.predictor
        weights, revision = actor_weights(served, options)
        scored = dataset.map_batches(
            ScoreActor,
            fn_constructor_kwargs={
                "weights": weights,
                "revision": revision,
                "expected_sha256": served.weights_sha256,
                "predictor_options": {
                    "precision": predictor.precision,
                    "channels_last": predictor.memory_format == torch.channels_last,
                    # every actor runs what the driver chose, so rows match the local engine's
                    "backend": "torch" if predictor.backend_name.startswith("torch") else predictor.backend_name,
                    "device": "cuda" if options.num_gpus_per_worker else "cpu",
                },
                "done": done,
                "batch_size": batch_size,
                "cams": {"folder": cams.folder, "labels": cams.labels, "opacity": cams.opacity} if cams else None,
            },
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=options.workers,
            **({"num_gpus": options.num_gpus_per_worker} if options.num_gpus_per_worker else {}),
        )
        for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = table.to_pylist()
            kept = [{k: v for k, v in row.items() if k != _SKIPPED} for row in rows if not row[_SKIPPED]]
            yield len(rows), kept
    finally:
        if started:
            ray.shutdown()
