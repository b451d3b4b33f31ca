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
from cxr.io import InvalidImageError, load_image
from cxr.labels import LABEL_SETS
from cxr.model import CXRNet
from cxr.predictor import PRECISIONS, Prediction
from cxr.serving import ServedModel, load_served_model
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
        help="overlays to write: 'positive' (default; the top label if none is), 'all', or comma-separated labels",
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
                images.append(load_image(name))
                names.append(name)
            except InvalidImageError as err:
                failures += 1
                print(f"{name}: {err}", file=sys.stderr)
        for name, prediction in zip(names, predictor.predict_batch(images), strict=True):
            overlays = {}
            if args.cam_dir:
                stem = _unique_stem(Path(name).stem, used_stems)
                for label in wanted(prediction):
                    path = args.cam_dir / f"{stem}_{label}.png"
                    Image.fromarray(prediction.overlay(label, opacity=args.opacity)).save(path)
                    overlays[label] = str(path)
            row = {"image": name, **prediction.to_dict(), "overlays": overlays}
            print(json.dumps({**row, "model": served.summary()}), flush=True)
    return 1 if failures else 0


def _cam_label_choice(spec: str, labels: tuple[str, ...]):
    """Turn ``--cam-labels`` into a function from a prediction to the labels to render."""
    if spec == "all":
        return lambda prediction: list(labels)
    if spec == "positive":

        def positive_or_top(prediction: Prediction) -> list[str]:
            return prediction.positive or [labels[int(prediction.probabilities.argmax())]]

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
