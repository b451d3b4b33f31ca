"""``python -m train publish``: stage a weights folder with its model card and upload it to the Hub.

The folder that is uploaded is staged first: the weights folder's own files (``config.json`` with
the evaluation's headline numbers in ``metadata["evaluation"]``, ``model.safetensors``, the split
and training logs), ``README.md`` rendered from the repository's ``model_card.md`` template with
the numbers of ``metrics.json``, ``metrics.json`` itself, and the evaluation report and plots under
``evaluation/``. The staged folder must load with :func:`cxr.weights.load_model` before anything is
sent. The upload is a single ``upload_folder`` commit, whose hash is printed for the Space to pin;
without a tag, a second commit rewrites the card to pin that hash (a commit cannot name its own).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from cxr.config import ModelConfig
from cxr.weights import CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, WeightsError, load_config, load_model, sha256_of
from train.evaluation.evaluate import EVALUATION_DIR, METRICS_FILE, evaluation_summary
from train.evaluation.splits import SPLIT_FILE
from train.publishing.card import CARD_FILE, CARD_TEMPLATE, DEFAULT_DATASET_ID, render_card


class PublishError(RuntimeError):
    """Something to fix before publishing; the message says what."""


# ---------------------------------------------------------------- inputs


def read_metrics(weights: Path, evaluation: Path, config: ModelConfig) -> dict[str, Any]:
    """The evaluation's metrics.json, checked to describe these very weights as ``config.json`` serves them.

    Refused: metrics of other weights; a headline evaluation on another split than test; a subset
    record that does not say which images; and probabilities or decisions computed with other
    thresholds, temperatures or biases than ``config.json`` holds (``evaluate --calibrate`` without
    ``--update-config``), since the card would then describe a model nobody downloads.
    """
    path = evaluation / METRICS_FILE
    if not path.is_file():
        raise PublishError(
            f"No {path}: evaluate first, e.g. `python -m train evaluate --weights {weights} --data-dir NIH_ROOT`. "
            "A model card without measured numbers is not published."
        )
    metrics = json.loads(path.read_text(encoding="utf-8"))
    weights_sha = sha256_of(weights / WEIGHTS_FILE)
    if metrics.get("weights", {}).get("sha256") != weights_sha:
        raise PublishError(f"{path} was computed for other weights (SHA-256 differs); evaluate these weights again.")
    if metrics.get("split") != "test":
        raise PublishError(
            f"{path} evaluates the {metrics.get('split')} split; the card's headline must be the test split "
            "(`python -m train evaluate --split test`)."
        )
    subset = metrics.get("subset")
    if subset and "description" not in subset:
        raise PublishError(f"{path} comes from an older --available-only run that does not record which images.")
    check_calibration(config, metrics, path)
    return metrics


def check_calibration(config: ModelConfig, metrics: dict[str, Any], source: Path) -> None:
    """Refuse metrics computed with other per-label thresholds, temperatures or biases than ``config``."""
    for k, label in enumerate(config.labels):
        m = metrics["per_label"].get(label, {})
        served = {"threshold": config.thresholds[k], "temperature": config.temperatures[k], "bias": config.biases[k]}
        measured = {"threshold": m.get("threshold"), "temperature": m.get("temperature"), "bias": m.get("bias", 0.0)}
        for key, value in served.items():
            if measured[key] != value:
                raise PublishError(
                    f"{source} was computed with {label} {key} {measured[key]} but config.json serves {value}: "
                    "was it `evaluate --calibrate` without `--update-config`? Evaluate again so the card describes "
                    "the config that is published."
                )


# ---------------------------------------------------------------- staging


def stage(
    weights: Path,
    evaluation: Path,
    folder: Path,
    *,
    repo_id: str | None,
    revision: str | None,
    dataset_id: str = DEFAULT_DATASET_ID,
    template: Path = CARD_TEMPLATE,
) -> Path:
    """Assemble exactly what will be uploaded into ``folder`` (empty or new), check it loads, write the card."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise PublishError(f"The staging folder {folder} is not empty.")
    config = load_config(weights)
    if not config.trained:
        raise PublishError(f"{weights} holds untrained weights (config.trained is false); they are not published.")
    metrics = read_metrics(weights, evaluation, config)
    skipped = {CARD_FILE, METRICS_FILE, CONFIG_FILE}
    for path in sorted(weights.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name not in skipped:
            if path.suffix.lower() in PICKLE_SUFFIXES:
                raise PublishError(f"{path} is a pickle file; only safetensors are published.")
            _link_or_copy(path, folder / path.name)
    (folder / EVALUATION_DIR).mkdir()
    for path in sorted(evaluation.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            _link_or_copy(path, folder / EVALUATION_DIR / path.name)
    shutil.copyfile(evaluation / METRICS_FILE, folder / METRICS_FILE)
    summary = evaluation_summary(metrics)
    config.replace(metadata={**config.metadata, "evaluation": summary}).save(folder / CONFIG_FILE)
    load_model(folder)  # strict load and checksum: the staged folder is what users will download
    name = repo_id.split("/")[-1] if repo_id else weights.resolve().name
    write_card(folder, name, repo_id, revision, dataset_id, template)
    return folder


def write_card(
    folder: Path, name: str, repo_id: str | None, revision: str | None, dataset_id: str, template: Path
) -> Path:
    """Render the card from the staged folder's own config, metrics and split; check it states any subset."""
    metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    split_path = folder / SPLIT_FILE
    split_info = json.loads(split_path.read_text(encoding="utf-8")) if split_path.is_file() else None
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.name != CARD_FILE
    }
    card = render_card(load_config(folder), metrics, name, repo_id, revision, files, split_info, dataset_id, template)
    subset = metrics.get("subset")
    if subset and subset["description"] not in card:
        raise PublishError(f"The model card does not state that only {subset['description']} were evaluated.")
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    return folder / CARD_FILE


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link (no copy of a 100 MB weights file) when source and stage share a file system."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# ---------------------------------------------------------------- upload


def hub_api() -> HfApi:
    """An authenticated client: HF_TOKEN, or the cache written by `hf auth login`."""
    token = get_token()
    if not token:
        raise PublishError("No Hugging Face token: set HF_TOKEN or run `hf auth login` (write access to the repo).")
    return HfApi(token=token)


def upload(folder: Path, repo_id: str, *, private: bool, tag: str | None, message: str) -> str:
    """Create the repo if needed, upload ``folder`` as one commit, tag it; returns the commit hash."""
    api = hub_api()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=folder, commit_message=message)
    if tag:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=message)
    return commit.oid


def pin_card(folder: Path, repo_id: str, commit: str, dataset_id: str) -> str:
    """Rewrite the uploaded card so "How to use" pins ``commit`` (the weights' commit), as a second commit.

    A commit cannot name its own hash; the card's commit holds the same weights, so either pins them.
    """
    write_card(folder, repo_id.split("/")[-1], repo_id, commit, dataset_id, CARD_TEMPLATE)
    card_commit = hub_api().upload_file(
        path_or_fileobj=folder / CARD_FILE,
        path_in_repo=CARD_FILE,
        repo_id=repo_id,
        repo_type="model",
        commit_message=f"Model card: pin revision {commit}",
    )
    return card_commit.oid


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train publish",
        description="Write the model card from the evaluation and upload the weights folder to the Hugging Face "
        "Hub (token from HF_TOKEN or `hf auth login`). Prints the commit hash to pin.",
    )
    parser.add_argument("--weights", type=Path, required=True, help="weights folder (evaluated)")
    parser.add_argument("--repo-id", help="Hub model repo ORG/NAME (created if missing); needed unless --dry-run")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--tag", help="also tag the commit (e.g. v0.1.0); the card then pins the tag")
    parser.add_argument("--evaluation", type=Path, help="evaluation folder (default WEIGHTS/evaluation)")
    parser.add_argument("--dataset-id", default=DEFAULT_DATASET_ID, help="Hub dataset id for the card's metadata")
    parser.add_argument("--stage", type=Path, help="assemble the upload here and keep it (default: a temp folder)")
    parser.add_argument("--dry-run", action="store_true", help="stage and write the card, upload nothing")
    parser.add_argument(
        "--allow-subset",
        action="store_true",
        help="upload even though the evaluation used only part of the official test list (the card states it)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train publish``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.repo_id or args.dry_run):
        parser.error("--repo-id is required to upload (a --dry-run can do without)")
    evaluation = args.evaluation or args.weights / EVALUATION_DIR
    keep = args.stage or (Path(tempfile.mkdtemp(prefix="cxr-publish-")) if args.dry_run else None)
    try:
        with tempfile.TemporaryDirectory(prefix="cxr-publish-") as scratch:
            folder = stage(
                args.weights,
                evaluation,
                keep or Path(scratch),
                repo_id=args.repo_id,
                revision=args.tag,
                dataset_id=args.dataset_id,
            )
            if args.dry_run:
                print(f"dry run: the upload is staged in {folder} (model card: {folder / CARD_FILE})")
                return 0
            metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
            if metrics.get("subset") and not args.allow_subset:
                raise PublishError(
                    f"The evaluation used {metrics['subset']['description']} only. The card says so, but a Hub "
                    "release is usually measured on the whole test list: evaluate it all, or pass --allow-subset."
                )
            message = (
                f"cxr weights {sha256_of(folder / WEIGHTS_FILE)[:12]}: mean AUROC {metrics['mean_auroc']:.4f} "
                f"on {metrics['dataset']} {metrics['split']}"
            )
            commit = upload(folder, args.repo_id, private=args.private, tag=args.tag, message=message)
            card_commit = None if args.tag else pin_card(folder, args.repo_id, commit, args.dataset_id)
    except (PublishError, WeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except HfHubHTTPError as err:
        print(f"error: the Hub refused the upload: {err}", file=sys.stderr)
        return 1
    print(f"uploaded {args.repo_id} at commit {commit}" + (f" (tag {args.tag})" if args.tag else ""))
    if card_commit:
        print(f"model card pinned to it in commit {card_commit}")
    print(f"pin it in the Space: CXR_MODEL_REPO={args.repo_id} CXR_MODEL_REVISION={commit}")
    return 0
