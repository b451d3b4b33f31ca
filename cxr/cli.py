"""``python -m cxr``: predict on files, inspect weights, make development weights."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from cxr.backends import AUTO, BACKENDS, default_backend
from cxr.config import ModelConfig
from cxr.io import InvalidImageError, decode
from cxr.labels import LABEL_SETS
from cxr.model import CXRNet
from cxr.predictor import EMPTY_MAP_NOTE, PRECISIONS, Prediction
from cxr.serving import ServedModel, first_heatmap, load_served_model
from cxr.weights import WeightsError, save_model

DESCRIPTION = """Chest X-ray findings (NIH ChestX-ray14 labels) with a Grad-CAM heatmap per label.
Weights: --weights FOLDER_OR_REPO, else $CXR_WEIGHTS, else the project's Hub repo at its pinned
revision, else the bundled starter model, else demonstration weights (the choice is printed on stderr)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`cxr info | head`): stop quietly, and keep Python's exit-time flush
        # of stdout from raising the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxr", description=DESCRIPTION)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict",
        help="probabilities (one JSON object per image) and Grad-CAM overlays",
        description="Print one JSON object per image (probabilities, thresholds, positives, overlay paths and the "
        "weights' provenance); bad files are reported on stderr and skipped.",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM files")
    _add_weights_arguments(predict)
    predict.add_argument("--cam-dir", type=Path, help="write Grad-CAM overlay PNGs into this folder")
    predict.add_argument(
        "--cam-labels",
        default="positive",
        help="overlays to write: 'positive' (default; if none is, the most probable label above chance with a "
        "non-empty map), 'all', or comma-separated labels",
    )
    predict.add_argument("--opacity", type=float, default=0.5, help="heatmap opacity in [0, 1] (default 0.5)")
    predict.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    predict.add_argument(
        "--backend", choices=(AUTO, *BACKENDS), default=None,
        help="what runs the model (default: $CXR_BACKEND, else auto: the fastest this CPU supports that agrees "
        "with torch fp32 on a start-up probe)",
    )  # fmt: skip
    predict.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="fp32 (default) or bf16 autocast (--backend torch)"
    )
    predict.add_argument("--channels-last", action="store_true", help="channels-last memory layout (--backend torch)")
    predict.set_defaults(run=_predict)

    _add_score_parser(commands)

    info = commands.add_parser("info", help="print the weights' config.json and where they come from")
    _add_weights_arguments(info)
    info.set_defaults(run=_info)

    dev = commands.add_parser(
        "make-untrained-weights",
        help="write a randomly initialised weights folder, marked untrained (development and tests only)",
    )
    dev.add_argument("folder", type=Path)
    dev.add_argument("--trunk", default="resnet50", help="timm trunk (default resnet50)")
    dev.add_argument("--image-size", type=int, default=512)
    dev.add_argument("--labels", choices=sorted(LABEL_SETS), default="chestxray14")
    dev.add_argument("--seed", type=int, default=0)
    dev.set_defaults(run=_make_untrained)
    return parser


def _add_score_parser(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser(
        "score",
        help="score many images into one Parquet file (resumable; one machine or a Ray cluster)",
        description="Score image files, folders, globs or CSV/Parquet manifests into one Parquet file, one row per "
        "image (bad files get an error row). Re-running with the same --out skips images already scored with the "
        "same weights and adds the rest.",
    )
    score.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, globs, or .csv/.parquet manifests"
    )
    score.add_argument("--out", type=Path, required=True, help="the Parquet file to write (or resume)")
    score.add_argument("--path-column", default="path", help="manifests' column of image paths (default 'path')")
    _add_weights_arguments(score)
    score.add_argument("--batch-size", type=int, default=16, help="images per forward pass and per part (default 16)")
    score.add_argument(
        "--workers",
        type=int,
        help="decoding processes (local engine; default none on the CPU, whose cores run the model, and one per spare "
        "core up to 8 with a GPU) or model actors (Ray; default 1)",
    )
    score.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="auto (default): torch bf16 + channels-last on a GPU; on the CPU the backend `predict` runs (its answers)",
    )
    score.add_argument("--channels-last", action="store_true", help="channels-last memory layout")
    score.add_argument("--cams", type=Path, metavar="DIR", help="write every image's maps here (.npz per image)")
    score.add_argument("--cam-labels", help="comma-separated labels: write their overlay PNGs instead of .npz maps")
    score.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    score.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
    score.add_argument("--num-gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.set_defaults(run=_score)


def _score(args: argparse.Namespace) -> int:
    from cxr.scoring.inputs import ManifestError, expand_inputs
    from cxr.scoring.ray_engine import RayOptions
    from cxr.scoring.run import score
    from cxr.scoring.store import StoreError
    from cxr.scoring.work import CamWriter

    on_gpu = torch.cuda.is_available() and (args.engine == "local" or args.num_gpus_per_worker > 0)
    precision = args.precision if args.precision != "auto" else ("bf16" if on_gpu else "fp32")
    channels_last = args.channels_last or (args.precision == "auto" and on_gpu)
    # The CPU path is the app's (the fastest backend that agrees with torch fp32); a GPU or torch options run torch.
    backend = "torch" if on_gpu or precision != "fp32" or channels_last else default_backend()
    served = _load(args, precision=precision, channels_last=channels_last, backend=backend)
    print(f"backend: {served.predictor.backend_name}", file=sys.stderr)
    try:
        items = expand_inputs(args.inputs, args.path_column)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cams = None
    if args.cams:
        labels = [label.strip() for label in (args.cam_labels or "").split(",") if label.strip()]
        unknown = [label for label in labels if label not in served.config.labels]
        if unknown:
            print(f"error: unknown label(s) {', '.join(unknown)}", file=sys.stderr)
            return 2
        cams = CamWriter(args.cams, labels)
    actors = args.workers if args.workers is not None else 1
    ray_options = RayOptions(args.ray_address, actors, args.num_gpus_per_worker, args.weights, args.revision)
    try:
        summary = score(
            items,
            args.out,
            served,
            engine=args.engine,
            batch_size=args.batch_size,
            workers=args.workers,
            cams=cams,
            ray=ray_options,
            progress=not args.no_progress,
        )
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the parts written so far are whole files: the next run resumes from them
        print(f"interrupted: re-run the same command to resume into {args.out}", file=sys.stderr)
        return 130
    print(
        f"{summary.out}: {summary.total_rows} rows; this run added {summary.added} ({summary.errors} unreadable), "
        f"skipped {summary.skipped} already scored, {summary.images_per_second:.2f} images/s",
        file=sys.stderr,
    )
    return 1 if summary.errors else 0


def _add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", help="weights folder or Hub repo id ORG/NAME (default: $CXR_WEIGHTS, then the order above)"
    )
    parser.add_argument("--revision", help="Hub commit hash or tag to pin (Hub repos only)")


def _load(args: argparse.Namespace, **predictor_options: object) -> ServedModel:
    """The weights in the documented order (explicit ones must load), with a warning on stderr when they
    are untrained, synthetic or not the project's published weights."""
    served = load_served_model(args.weights, args.revision, strict_explicit=True, **predictor_options)
    summary = served.summary()
    print(f"weights: {served.choice.describe()}. {summary['why']}", file=sys.stderr)
    if summary["warning"]:
        print(f"warning: {summary['warning']}", file=sys.stderr)
    return served


def _predict(args: argparse.Namespace) -> int:
    torch_options = args.precision != "fp32" or args.channels_last
    backend = args.backend or ("torch" if torch_options else default_backend())
    if backend != "torch" and torch_options:
        print("error: --precision and --channels-last apply to --backend torch only.", file=sys.stderr)
        return 2
    served = _load(args, precision=args.precision, channels_last=args.channels_last, backend=backend)
    print(f"backend: {served.predictor.backend_name}", file=sys.stderr)
    predictor = served.predictor
    wanted = _cam_label_choice(args.cam_labels, predictor.labels)
    if args.cam_dir:
        args.cam_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    used_stems: set[str] = set()
    for start in range(0, len(args.images), args.batch_size):
        names, images = [], []
        for name in args.images[start : start + args.batch_size]:
            try:
                images.append(decode(name))  # with what the upload said, for the input check
                names.append(name)
            except InvalidImageError as err:
                failures += 1
                print(f"{name}: {err}", file=sys.stderr)
        for name, prediction in zip(names, predictor.predict_batch(images), strict=True):
            check = prediction.input_check
            if not check.accepted:
                print(f"{name}: refused by the input check ({check.kind}): {check.message}", file=sys.stderr)
            elif check.inverted:
                print(f"{name}: {check.message}", file=sys.stderr)
            overlays = {}
            if args.cam_dir:
                stem = _unique_stem(Path(name).stem, used_stems)
                for label in wanted(prediction):
                    path = args.cam_dir / f"{stem}_{label}.png"
                    Image.fromarray(prediction.overlay(label, opacity=args.opacity)).save(path)
                    overlays[label] = str(path)
            # A blank overlay is an answer, not a failure: say which ones are, and why they are blank.
            empty = [label for label in overlays if label in prediction.empty_maps]
            for label in empty:
                print(f"{name}: the {label} overlay is empty: {EMPTY_MAP_NOTE} ({overlays[label]})", file=sys.stderr)
            row = {"image": name, **prediction.to_dict(), "overlays": overlays, "empty_overlays": empty}
            print(json.dumps({**row, "model": served.summary()}), flush=True)
    return 1 if failures else 0


def _cam_label_choice(spec: str, labels: tuple[str, ...]):
    """Turn ``--cam-labels`` into a function from a prediction to the labels to render."""
    if spec == "all":
        return lambda prediction: list(labels)
    if spec == "positive":

        def positive_or_top(prediction: Prediction) -> list[str]:
            return prediction.positive or [first_heatmap(prediction)[0]]

        return positive_or_top
    chosen = [label.strip() for label in spec.split(",") if label.strip()]
    unknown = [label for label in chosen if label not in labels]
    if unknown:
        raise SystemExit(f"error: unknown label(s) {', '.join(unknown)}; the model has {', '.join(labels)}")
    return lambda prediction: chosen


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def _info(args: argparse.Namespace) -> int:
    served = _load(args)
    print(json.dumps({**served.config.to_dict(), "served": served.summary()}, indent=2))
    return 0


def _make_untrained(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    config = ModelConfig(
        labels=LABEL_SETS[args.labels],
        trunk=args.trunk,
        image_size=args.image_size,
        trained=False,
        metadata={"description": "Randomly initialised, untrained weights for development and tests only."},
    )
    folder = save_model(CXRNet(config), args.folder)
    print(f"wrote untrained weights to {folder}")
    return 0
