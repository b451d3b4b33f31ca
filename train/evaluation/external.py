"""``python -m train evaluate --scores SCORES --labels LABELS --label-map MAP --out DIR``: external validation.

A ``cxr score`` Parquet file is joined with another dataset's label file as distributed (see
:mod:`train.evaluation.label_maps`) and evaluated with the same code as ``evaluate`` (per-label AUROC with
patient-bootstrap intervals, AUPRC, operating point at the weights' own thresholds, calibration, subgroups) into
the same ``metrics.json`` and ``report.md``. Nothing is refitted: thresholds, temperatures and biases are those
stored in the scores file's metadata, i.e. the weights' config.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cxr.config import ModelConfig
from cxr.scoring.rows import probability_column
from cxr.scoring.store import StoreError, read_metadata
from train.evaluation.bootstrap import BootstrapSettings
from train.evaluation.evaluate import METRICS_FILE, METRICS_FORMAT, probability_metrics
from train.evaluation.label_maps import (
    MAPS,
    MIMIC_STUDY,
    UNCERTAIN,
    UNCERTAIN_POLICIES,
    LabelMapError,
    LabelRow,
    LabelSet,
    mimic_frontal_images,
    path_suffixes,
    read_labels,
)
from train.evaluation.plots import write_plots
from train.evaluation.published import PUBLISHED
from train.evaluation.report import write_report
from train.evaluation.subgroups import age_band, subgroup_auroc
from train.evaluation.tables import number

VIEWS = ("frontal", "lateral", "all")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train evaluate --scores",
        description="Evaluate a `cxr score` Parquet file against another dataset's labels (external validation).",
    )
    parser.add_argument("--scores", type=Path, required=True, help="the Parquet file of `python -m cxr score`")
    parser.add_argument("--labels", type=Path, required=True, help="the dataset's label file, as distributed")
    parser.add_argument(
        "--label-map", required=True, help=f"{', '.join(MAPS)}, or a JSON map file (train.evaluation.label_maps)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder: metrics.json, report.md, plots")
    parser.add_argument(
        "--uncertain",
        choices=UNCERTAIN_POLICIES,
        default="zeros",
        help="CheXpert-style -1 labels: zeros (default; U-Zeros of Irvin et al.), ones (U-Ones), or ignore "
        "(leave out every image with an uncertain label among the evaluated findings)",
    )
    parser.add_argument(
        "--views",
        choices=VIEWS,
        default="frontal",
        help="frontal (default; laterals are reported as left out), lateral (only them), or all",
    )
    parser.add_argument("--id-column", help="match label rows by this carried column of the scores file")
    parser.add_argument("--metadata", type=Path, help="mimic: mimic-cxr-2.0.0-metadata.csv(.gz), to tell laterals")
    parser.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train evaluate --scores``."""
    args = _parser().parse_args(argv)
    try:
        metrics = evaluate_scores(args)
    except (LabelMapError, StoreError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    low, high = metrics["mean_auroc_ci"]
    print(
        f"{metrics['dataset']}: {metrics['n_images']} images, {len(metrics['labels'])} shared labels, mean AUROC "
        f"{number(metrics['mean_auroc'])} (95% CI {number(low)}-{number(high)}); report in {args.out / 'report.md'}"
    )
    return 0


def match(
    scored: list[dict[str, Any]], labels: LabelSet, id_column: str | None, frontal_by_image: dict[str, bool] | None
) -> tuple[list[tuple[dict, LabelRow, bool | None]], int]:
    """(scored row, label row, frontal) for every scored row that has labels, and how many have none.

    Rows match by ``id_column`` when given, by MIMIC study for study-level labels, else by the longest trailing
    part of the scored path equal to the label's key (a relative path such as CheXpert's ``Path``, or a file name).
    """
    index = {row.key.replace("\\", "/"): row for row in labels.rows}
    matched, unmatched = [], 0
    for row in scored:
        label, frontal = None, None
        if id_column:
            label = index.get(str(row.get(id_column)))
        elif labels.rows and labels.rows[0].kind == "study":
            found = MIMIC_STUDY.search(row["path"].replace("\\", "/"))
            if found:
                label = index.get(found.group(1))
                if frontal_by_image is not None:
                    frontal = frontal_by_image.get(found.group(2))
        else:
            label = next((index[s] for s in path_suffixes(row["path"]) if s in index), None)
        if label is None:
            unmatched += 1
            continue
        matched.append((row, label, label.frontal if frontal is None else frontal))
    return matched, unmatched


def evaluate_scores(args: argparse.Namespace) -> dict[str, Any]:
    """Join, filter, evaluate and write metrics.json / report.md / plots; returns the metrics."""
    meta = read_metadata(args.scores)
    config = ModelConfig.from_dict(meta["config"])
    table = pq.read_table(args.scores)
    if args.id_column and args.id_column not in table.column_names:
        raise LabelMapError(f"{args.scores.name} has no column {args.id_column!r}.")
    all_rows = table.to_pylist()
    scored = [row for row in all_rows if row["error"] is None]
    labels = read_labels(args.label_map, args.labels)
    frontal_by_image = mimic_frontal_images(args.metadata) if args.metadata else None
    matched, unmatched = match(scored, labels, args.id_column, frontal_by_image)

    shared = [label for label in config.labels if label in labels.labels]
    if not shared:
        raise LabelMapError(f"{labels.name} shares no label with these weights ({', '.join(config.labels)}).")
    views = {"frontal": 0, "lateral": 0, "unknown": 0}
    kept, uncertain_left_out = [], 0
    for row, label, frontal in matched:
        view = "unknown" if frontal is None else ("frontal" if frontal else "lateral")
        views[view] += 1
        if (args.views == "frontal" and view == "lateral") or (args.views == "lateral" and view != "lateral"):
            continue
        values = [label.labels[name] for name in shared]
        if UNCERTAIN in values and args.uncertain == "ignore":
            uncertain_left_out += 1
            continue
        value_of_uncertain = 1 if args.uncertain == "ones" else 0
        kept.append((row, label, [value_of_uncertain if v == UNCERTAIN else v for v in values]))
    if not kept:
        raise LabelMapError(f"No scored image of {args.scores.name} is left to evaluate after matching {labels.name}.")

    y_true = np.array([values for _, _, values in kept], dtype=np.int64)
    probability = np.array([[row[probability_column(n)] for n in shared] for row, _, _ in kept], dtype=np.float64)
    patients = np.array([label.patient for _, label, _ in kept])
    positions = [config.labels.index(name) for name in shared]
    sub_config = config.replace(
        labels=tuple(shared),
        thresholds=[config.thresholds[i] for i in positions],
        temperatures=[config.temperatures[i] for i in positions],
        biases=[config.biases[i] for i in positions],
    )
    settings = BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed)
    weights = meta["weights"]
    metrics: dict[str, Any] = {
        "format_version": METRICS_FORMAT,
        "split": f"external ({args.views} views)" if labels.name != "nih" else "scored images",
        "split_source": str(args.labels.name),
        "dataset": {"nih": "NIH ChestX-ray14"}.get(labels.name, labels.name),
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "weights": {
            "name": weights.get("source") or weights.get("kind"),
            "sha256": weights["weights_sha256"],
            "trunk": config.trunk,
            "image_size": config.image_size,
            "trained": config.trained,
        },
        "bootstrap": dataclasses.asdict(settings),
        "input": f"cxr score file {args.scores.name} (cxr {meta['cxr_version']}, precision {meta['precision']})",
        "external": {
            "label_map": args.label_map,
            "labels_file": args.labels.name,
            "shared_labels": shared,
            "left_out_labels": [label for label in config.labels if label not in shared],
            "uncertain_policy": args.uncertain,
            "uncertain_images_left_out": uncertain_left_out,
            "views_evaluated": args.views,
            "views_matched": views,
            "scored_rows": len(all_rows),
            "unreadable_rows": len(all_rows) - len(scored),
            "scored_without_labels": unmatched,
            "thresholds": "the weights' own (config.json), not refitted",
        },
    }
    metrics.update(probability_metrics(y_true, probability, patients, sub_config, settings))
    attributes = _attributes([label for _, label, _ in kept])
    metrics["subgroups"] = subgroup_auroc(y_true, probability, patients, attributes, shared, settings)
    metrics["published"] = {
        p.name: {"source": p.source, "split": p.split, "official_split": p.official_split, "mean_auroc": p.mean_auroc}
        for p in PUBLISHED
    }
    metrics["localization_skipped"] = "no bounding boxes in an external label file"
    metrics["relabels_skipped"] = "no adjudicated labels for an external label file"
    args.out.mkdir(parents=True, exist_ok=True)
    metrics["plots"] = write_plots(y_true, probability, metrics, args.out)
    (args.out / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    write_report(metrics, args.out, metrics["plots"])
    return metrics


def _attributes(rows: list[LabelRow]) -> dict[str, list[str | None]]:
    """Subgroups the label file names (sex, age band, view), for those it has."""
    attributes: dict[str, list[str | None]] = {}
    for key in ("sex", "age", "view"):
        values = [row.attributes.get(key) for row in rows]
        if any(values):
            attributes[key] = [_age(v) if key == "age" else (v or None) for v in values]
    return attributes


def _age(text: str | None) -> str | None:
    try:
        return age_band(int(float(text))) if text else None
    except ValueError:
        return None
