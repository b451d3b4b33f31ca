"""``python -m train evaluate``: what a clinical-ML reviewer asks of a weights folder, on one split.

Writes ``metrics.json``, ``report.md`` and PNG plots into the output folder (default
``WEIGHTS/evaluation``): per-label AUROC with patient-bootstrap CIs, AUPRC with prevalence, the
operating-point metrics at the config's per-label thresholds, calibration (and optionally fitted
temperatures), subgroups, localization on BBox_List_2017, radiologist-adjudicated labels and a
comparison with published results. ``--update-config`` stores the headline numbers in
``config.json`` (``metadata["evaluation"]``) where the app reads them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cxr.cam import upsample_map
from cxr.config import ModelConfig
from cxr.labels import CHESTXRAY8_LABELS
from cxr.preprocess import Letterbox
from cxr.weights import CONFIG_FILE, WEIGHTS_FILE, WeightsError, load_model, sha256_of
from train.data.cache import CacheError, ImageCache, default_cache_dir
from train.data.nih import (
    BBOX_LIST,
    TEST_LIST,
    Box,
    DataError,
    Record,
    Split,
    dataset_name,
    find_images,
    label_matrix,
    official_split,
    read_bbox_list,
    read_split_list,
)
from train.evaluation import calibration
from train.evaluation.bootstrap import BootstrapSettings, auroc_with_intervals
from train.evaluation.localization import LocalizationCase, evaluate_localization
from train.evaluation.metrics import json_number, operating_point_metrics, per_label_auprc, prevalence
from train.evaluation.plots import write_plots
from train.evaluation.predict import predict_records
from train.evaluation.published import PUBLISHED
from train.evaluation.relabels import find_relabels, read_relabels, relabel_auroc
from train.evaluation.report import write_report
from train.evaluation.splits import load_split
from train.evaluation.subgroups import subgroup_attributes, subgroup_auroc

METRICS_FORMAT = 1
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
EVALUATION_DIR = "evaluation"
CALIBRATION_BINS = 10


# ---------------------------------------------------------------- metrics from predictions


def classification_metrics(
    y_true: np.ndarray,
    logits: np.ndarray,
    patient_ids: np.ndarray,
    config: ModelConfig,
    settings: BootstrapSettings,
) -> dict[str, Any]:
    """AUROC (CI), AUPRC, prevalence, operating point and calibration per label, and the means.

    Probabilities are ``sigmoid((logit + bias) / T)`` with the config's biases and temperatures, and
    decisions use the config's per-label thresholds: exactly what the app shows for the same weights.
    """
    probability = calibration.probabilities(logits, calibration.Scaling.of(config))
    return probability_metrics(y_true, probability, patient_ids, config, settings)


def probability_metrics(
    y_true: np.ndarray,
    probability: np.ndarray,
    patient_ids: np.ndarray,
    config: ModelConfig,
    settings: BootstrapSettings,
) -> dict[str, Any]:
    """:func:`classification_metrics` from calibrated probabilities (e.g. a ``cxr score`` file's columns)."""
    labels = list(config.labels)
    subsets = {
        "all": list(range(len(labels))),
        "chestxray8": [labels.index(label) for label in CHESTXRAY8_LABELS if label in labels],
    }
    aurocs = auroc_with_intervals(y_true, probability, patient_ids, subsets, settings)
    auprc = per_label_auprc(y_true, probability)
    share = prevalence(y_true)
    operating = operating_point_metrics(y_true, probability, np.asarray(config.thresholds))
    per_label: dict[str, Any] = {}
    reliability: dict[str, Any] = {}
    for k, label in enumerate(labels):
        bins = calibration.reliability_bins(y_true[:, k], probability[:, k], CALIBRATION_BINS)
        reliability[label] = {
            "edges": bins.edges.tolist(),
            "count": bins.count.tolist(),
            "mean_probability": [json_number(v) for v in bins.mean_probability],
            "fraction_positive": [json_number(v) for v in bins.fraction_positive],
        }
        slope, intercept = calibration.calibration_slope_intercept(y_true[:, k], probability[:, k])
        per_label[label] = {
            "n_positive": int(y_true[:, k].sum()),
            "prevalence": float(share[k]),
            "auroc": json_number(aurocs.per_label[k]),
            "auroc_ci": [json_number(v) for v in aurocs.per_label_ci[k]],
            "auprc": json_number(auprc[k]),
            "threshold": config.thresholds[k],
            "temperature": config.temperatures[k],
            "bias": config.biases[k],
            **{key: json_number(operating[key][k]) for key in ("sensitivity", "specificity", "ppv", "npv", "f1")},
            "confusion": {key: int(operating[key][k]) for key in ("tp", "fp", "tn", "fn")},
            "mean_probability": float(probability[:, k].mean()),
            "ece": bins.ece,
            "ece_equal_mass": calibration.expected_calibration_error(
                y_true[:, k], probability[:, k], CALIBRATION_BINS, "mass"
            ),
            "calibration_slope": json_number(slope),
            "calibration_intercept": json_number(intercept),
            "brier": calibration.brier_score(y_true[:, k], probability[:, k]),
        }
    return {
        "labels": labels,
        "n_images": len(y_true),
        "n_patients": len(np.unique(patient_ids)),
        "mean_auroc": json_number(aurocs.means["all"]),
        "mean_auroc_ci": [json_number(v) for v in aurocs.means_ci["all"]],
        "mean_auroc_chestxray8": json_number(aurocs.means["chestxray8"]),
        "mean_auroc_chestxray8_ci": [json_number(v) for v in aurocs.means_ci["chestxray8"]],
        "per_label": per_label,
        "calibration": {
            "method": "sigmoid((logit + bias) / temperature) per label (Platt scaling)",
            "n_bins": CALIBRATION_BINS,
            "mean_ece": float(np.mean([m["ece"] for m in per_label.values()])),
            "mean_ece_equal_mass": float(np.mean([m["ece_equal_mass"] for m in per_label.values()])),
            "mean_brier": float(np.mean([m["brier"] for m in per_label.values()])),
            "reliability": reliability,
        },
    }


def fit_calibration(config: ModelConfig, val_logits: np.ndarray, val_true: np.ndarray) -> tuple[ModelConfig, dict]:
    """Fit per-label temperatures and biases on validation; return the new config and what changed.

    Thresholds are converted along with them, so every decision stays the same.
    """
    fitted = calibration.fit_scaling(val_logits, val_true)
    calibrated = fitted.apply_to(config)
    return calibrated, {
        "method": "Platt scaling: per-label temperature and bias, sigmoid((logit + bias) / temperature)",
        "fitted_on": "val",
        "n_images": len(val_true),
        **{
            f"{prefix}{field}": dict(zip(config.labels, getattr(source, field), strict=True))
            for prefix, source in (("", calibrated), ("previous_", config))
            for field in ("temperatures", "biases", "thresholds")
        },
    }


def evaluation_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers stored in ``config.metadata["evaluation"]`` for the app and the model card."""
    summary = {
        "split": metrics["split"],
        "dataset": metrics["dataset"],
        "n_images": metrics["n_images"],
        "n_patients": metrics["n_patients"],
        "mean_auroc": metrics["mean_auroc"],
        "mean_auroc_ci": metrics["mean_auroc_ci"],
        "mean_auroc_chestxray8": metrics["mean_auroc_chestxray8"],
        "mean_auroc_chestxray8_ci": metrics["mean_auroc_chestxray8_ci"],
        "per_label_auroc": {label: m["auroc"] for label, m in metrics["per_label"].items()},
        # The intervals say which labels the served weights can tell from chance (cxr.reliability).
        "per_label_auroc_ci": {label: m["auroc_ci"] for label, m in metrics["per_label"].items()},
        "mean_ece": metrics["calibration"]["mean_ece"],
        "confidence_intervals": (
            f"{metrics['bootstrap']['confidence']:.0%} percentile, "
            f"{metrics['bootstrap']['n_resamples']} bootstrap resamples of patients"
        ),
        "created": metrics["created"],
        "metrics_file": f"{EVALUATION_DIR}/{METRICS_FILE}",
    }
    if metrics.get("subset"):
        summary["subset"] = metrics["subset"]["description"]
    if metrics.get("localization"):
        summary["pointing_game"] = metrics["localization"]["all"]["pointing_game"]
    return summary


def save_config_keeping_weights(folder: str | Path, config: ModelConfig) -> Path:
    """Rewrite ``config.json`` of a weights folder whose ``model.safetensors`` stays as it is.

    Refuses when the weights file no longer matches the SHA-256 recorded in the config, so the
    checksum that :func:`cxr.weights.load_model` verifies stays true. Written atomically.
    """
    folder = Path(folder)
    recorded = config.metadata.get("weights_sha256")
    if recorded and sha256_of(folder / WEIGHTS_FILE) != recorded:
        raise WeightsError(f"{folder / WEIGHTS_FILE} does not match the SHA-256 in its {CONFIG_FILE}; not updating.")
    tmp = folder / f".{CONFIG_FILE}.tmp"
    config.save(tmp)
    os.replace(tmp, folder / CONFIG_FILE)
    return folder / CONFIG_FILE


def write_predictions(path: Path, records: Sequence[Record], probability: np.ndarray, labels: Sequence[str]) -> Path:
    """One row per image: name, patient, then the probability of every label (what the app would show)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "patient_id", *labels])
        for record, row in zip(records, probability, strict=True):
            writer.writerow([record.image, record.patient_id, *(f"{p:.6f}" for p in row)])
    return path


# ---------------------------------------------------------------- data


def open_cache(data_dir: Path, cache_dir: Path | None, image_size: int, records: Sequence[Record]) -> ImageCache | None:
    """The prepared cache if it holds every record at the model's size; None to decode the files."""
    folder = cache_dir or default_cache_dir(data_dir, image_size)
    try:
        cache = ImageCache.open(folder)
    except CacheError:
        if cache_dir:
            raise
        return None
    if cache.image_size != image_size or cache.not_ready([r.image for r in records]):
        if cache_dir:
            raise CacheError(f"{folder} does not hold every image of the split at {image_size} px.")
        return None
    return cache


def localization_cases(
    boxes_by_image: dict[str, list[Box]], maps: dict[str, np.ndarray], images: dict[str, Path], labels: Sequence[str]
) -> Iterator[LocalizationCase]:
    """One case per (image, label) with boxes: that label's map upsampled to the image's own size."""
    for name, boxes in sorted(boxes_by_image.items()):
        with Image.open(images[name]) as image:
            width, height = image.size  # header only: no pixels decoded
        by_label: dict[str, list] = {}
        for box in boxes:
            by_label.setdefault(box.label, []).append((box.x, box.y, box.w, box.h))
        for label, truth in sorted(by_label.items()):
            if label in labels:
                heatmap = upsample_map(maps[name][labels.index(label)], Letterbox(height, width))
                yield LocalizationCase(name, label, heatmap, tuple(truth))


def find_bbox_list(data_dir: Path) -> Path | None:
    return next((p for p in (data_dir / BBOX_LIST, data_dir / f"{BBOX_LIST}.gz") if p.is_file()), None)


# ---------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train evaluate",
        description="Evaluate a weights folder on one split: metrics.json, report.md and plots.",
    )
    parser.add_argument("--weights", type=Path, required=True, help="weights folder (config.json + model.safetensors)")
    parser.add_argument("--data-dir", type=Path, required=True, help="NIH root: Data_Entry, split lists, images")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="split to evaluate (default test)")
    parser.add_argument("--out", type=Path, help="output folder (default WEIGHTS/evaluation)")
    parser.add_argument("--split-file", type=Path, help="split.json to use (default WEIGHTS/split.json)")
    parser.add_argument(
        "--recarve-val",
        type=int,
        metavar="SEED",
        help="without a split.json: re-carve validation patients from train_val_list.txt with the training run's "
        "seed (and --val-fraction); --calibrate and --split val are refused without a split file or this",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="with --recarve-val (default 0.1)")
    parser.add_argument("--cache-dir", type=Path, help="prepared cache (default DATA_DIR/cache-SIZE when complete)")
    parser.add_argument("--bbox-list", type=Path, help="BBox_List_2017.csv (default: in DATA_DIR)")
    parser.add_argument("--relabels", type=Path, help="Google adjudicated labels csv(.gz) (default: in DATA_DIR)")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit per-label temperatures and biases (Platt scaling) on the validation split",
    )
    parser.add_argument(
        "--available-only",
        action="store_true",
        help="evaluate only the split's images found under DATA_DIR; the subset is stated in metrics.json, the report "
        "and the model card",
    )
    parser.add_argument(
        "--update-config",
        action="store_true",
        help="store the headline numbers (and the fitted temperatures, biases and thresholds) in WEIGHTS/config.json",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="patient bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train evaluate`` on an NIH split (:mod:`.cli` sends ``--scores`` elsewhere)."""
    args = _parser().parse_args(argv)
    try:
        metrics, out = evaluate(args)
    except (DataError, WeightsError, CacheError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{metrics['split']}: {metrics['n_images']} images, mean AUROC {metrics['mean_auroc']:.4f} "
        f"(95% CI {metrics['mean_auroc_ci'][0]:.4f}-{metrics['mean_auroc_ci'][1]:.4f}), "
        f"ChestX-ray8 labels {metrics['mean_auroc_chestxray8']:.4f}; report in {out / 'report.md'}"
    )
    return 0


def select_records(split: Split, args: argparse.Namespace, images: dict[str, Path]) -> tuple[list, list, dict | None]:
    """The records to evaluate, the validation records (for --calibrate), and the subset record.

    With --available-only only the records whose image is at hand are kept. The subset record is
    None when the whole official test list (or the whole validation split) is evaluated; otherwise
    ``{"used", "official", "description"}``, which metrics.json, the report and the model card state.
    """
    # The test split is NIH's test_list.txt whatever images the training run had at hand (a model trained
    # with --available-only may have seen no test image at all): split.json contributes validation only.
    records = official_split(args.data_dir, 0.0).test if args.split == "test" else split.val
    val = split.val
    if args.available_only:
        records, val = [r for r in records if r.image in images], [r for r in val if r.image in images]
    if not records:
        raise DataError(f"No image of the {args.split} split to evaluate.")
    if args.calibrate and (args.split == "val" or not val):
        raise DataError(
            "--calibrate fits temperatures and biases on the validation split: evaluate the test split, "
            "with a val split."
        )
    if args.split == "test":
        official, name = len(read_split_list(args.data_dir / TEST_LIST)), f"official test images ({TEST_LIST})"
    else:
        official, name = len(split.val), "validation images of the split"
    subset = None
    if len(records) != official:
        subset = {
            "used": len(records),
            "official": official,
            "description": f"{len(records):,} of the {official:,} {name}",
        }
    return records, val, subset


def boxes_of(records: Sequence[Record], bbox_path: Path | None) -> dict[str, list[Box]]:
    """Image name -> its ground-truth boxes, for the records that have any."""
    names = {r.image for r in records}
    by_image: dict[str, list[Box]] = {}
    for box in read_bbox_list(bbox_path) if bbox_path else []:
        if box.image in names:
            by_image.setdefault(box.image, []).append(box)
    return by_image


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Run the whole evaluation described by the parsed arguments; returns the metrics and the output folder."""
    weights = args.weights
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(weights, map_location=device)
    config = model.config
    recarve = None if args.recarve_val is None else (args.recarve_val, args.val_fraction)
    needs_val = args.calibrate or args.split == "val"
    split, split_source = load_split(args.data_dir, weights, args.split_file, needs_val=needs_val, recarve=recarve)
    images = find_images(args.data_dir)
    records, val, subset = select_records(split, args, images)
    needed = records + (val if args.calibrate else [])
    cache = None if args.available_only else open_cache(args.data_dir, args.cache_dir, config.image_size, needed)
    missing = [r.image for r in needed if r.image not in images] if cache is None else []
    if missing:
        raise DataError(
            f"{len(missing)} of {len(needed)} images are neither under {args.data_dir} nor in a prepared cache "
            f"(e.g. {missing[0]})."
        )
    bbox_path = args.bbox_list or find_bbox_list(args.data_dir)
    boxes = {name: b for name, b in boxes_of(records, bbox_path).items() if name in images}

    run = {"images": images, "cache": cache, "batch_size": args.batch_size, "workers": args.workers}
    run["precision"] = args.precision
    predictions = predict_records(model, records, keep_maps=set(boxes), description=args.split, **run)
    y_true = label_matrix(records, config.labels)
    scaling = None
    if args.calibrate:
        val_logits = predict_records(model, val, description="val (calibration)", **run).logits
        before = calibration.probabilities(predictions.logits, calibration.Scaling.of(config))
        config, scaling = fit_calibration(config, val_logits, label_matrix(val, config.labels))
        scaling["mean_ece_before"] = calibration.mean_ece(y_true, before)
        scaling["mean_ece_equal_mass_before"] = calibration.mean_ece(y_true, before, CALIBRATION_BINS, "mass")

    settings = BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed)
    patients = np.array([r.patient_id for r in records])
    metrics: dict[str, Any] = {
        "format_version": METRICS_FORMAT,
        "split": args.split,
        "split_source": split_source,
        "dataset": dataset_name(args.data_dir),
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "weights": {
            "name": weights.resolve().name,
            "sha256": config.metadata.get("weights_sha256"),
            "trunk": config.trunk,
            "image_size": config.image_size,
            "trained": config.trained,
        },
        "bootstrap": dataclasses.asdict(settings),
        "input": "prepared cache (8-bit)" if cache is not None else "image files (cxr.io.load_image)",
    }
    if subset:
        metrics["subset"] = subset
    metrics.update(classification_metrics(y_true, predictions.logits, patients, config, settings))
    if scaling:
        scaling["mean_ece_after"] = metrics["calibration"]["mean_ece"]
        scaling["mean_ece_equal_mass_after"] = metrics["calibration"]["mean_ece_equal_mass"]
        scaling["stored_in_config"] = bool(args.update_config)
        metrics["calibration_fit"] = scaling
    probability = calibration.probabilities(predictions.logits, calibration.Scaling.of(config))
    attributes = subgroup_attributes(records)
    metrics["subgroups"] = subgroup_auroc(y_true, probability, patients, attributes, config.labels, settings)
    metrics["published"] = {
        p.name: {"source": p.source, "split": p.split, "official_split": p.official_split, "mean_auroc": p.mean_auroc}
        for p in PUBLISHED
    }
    if boxes:
        cases = localization_cases(boxes, predictions.maps, images, list(config.labels))
        metrics["localization"] = evaluate_localization(cases)
    else:
        where = f"no box of {bbox_path.name} is on an image file of the {args.split} split" if bbox_path else None
        metrics["localization_skipped"] = where or "no BBox_List_2017.csv in the data folder"
    relabel_path = args.relabels or find_relabels(args.data_dir)
    relabels = None
    if relabel_path:
        relabels = relabel_auroc(records, probability, list(config.labels), read_relabels(relabel_path), settings)
    if relabels:
        metrics["relabels"] = relabels
    else:
        where = f"no image of the {args.split} split has an adjudicated label" if relabel_path else None
        metrics["relabels_skipped"] = where or "no adjudicated label file in the data folder"

    out = args.out or weights / EVALUATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    metrics["plots"] = write_plots(y_true, probability, metrics, out)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    write_predictions(out / PREDICTIONS_FILE, records, probability, config.labels)
    write_report(metrics, out, metrics["plots"])
    if args.update_config:
        updated = config.replace(metadata={**config.metadata, "evaluation": evaluation_summary(metrics)})
        save_config_keeping_weights(weights, updated)
    return metrics, out
