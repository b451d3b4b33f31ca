"""The model card: ``model_card.md`` filled with a weights folder's config and evaluation.

Tables and sentences come from :mod:`train.evaluation.tables` and :mod:`train.evaluation.report`, so
the card a reader sees on the Hub shows exactly the numbers of ``metrics.json``. The metadata carries
``library_name``, ``base_model`` (only when the trunk started from pretrained weights), the datasets and
the model-index results; "How to use" has the install line, the link to the code and the revision to pin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from cxr.config import ModelConfig
from cxr.input_check import CHECK_FILE
from cxr.labels import CHESTXRAY8_LABELS, CHESTXRAY14_LABELS
from cxr.provenance import describe_subset
from cxr.reliability import evidence, reliability_sentence
from cxr.weights import CONFIG_FILE, WEIGHTS_FILE
from train.evaluation import report, tables
from train.evaluation.evaluate import EVALUATION_DIR, METRICS_FILE
from train.evaluation.published import PUBLISHED, WANG_ARXIV
from train.evaluation.splits import SPLIT_FILE

CARD_TEMPLATE = Path(__file__).resolve().parents[2] / "model_card.md"
CARD_FILE = "README.md"
LIBRARY_NAME = "cxr"  # the card's library_name: the weights load with cxr (they are not a bare timm model)
CODE_URL = "https://github.com/cxr-project/cxr"
INSTALL_LINE = f'pip install "cxr @ git+{CODE_URL}"'
# The Hub's copy of NIH's release (images, Data_Entry_2017_v2020, the official split lists, boxes).
DEFAULT_DATASET_ID = "alkzar90/NIH-Chest-X-ray-dataset"
LICENSE = "mit"  # the project's license; NIH places no restriction on the images (attribution required)
TAGS = [
    "medical-imaging",
    "radiology",
    "chest-x-ray",
    "chestxray14",
    "multi-label-image-classification",
    "grad-cam",
    "weakly-supervised-localization",
    "pytorch",
    "safetensors",
]
FILE_DESCRIPTIONS = {
    CONFIG_FILE: "labels, input contract, per-label thresholds, temperatures and biases, provenance, evaluation",
    WEIGHTS_FILE: "the weights (safetensors; never pickle)",
    CHECK_FILE: "the input check's tensors: is an image a frontal chest radiograph? (settings in config.json)",
    CARD_FILE: "this model card",
    METRICS_FILE: "every number of the evaluation (JSON)",
    SPLIT_FILE: "the train / validation / test image names used",
    "metrics.jsonl": "training log, one JSON object per epoch",
}
NIH_DATA = (
    "NIH ChestX-ray14 (Wang et al. 2017): 112,120 frontal chest radiographs of 30,805 patients from the NIH "
    "Clinical Center, released as 1024 × 1024 8-bit PNGs with 14 findings mined from the radiology reports "
    "(`Data_Entry_2017_v2020.csv`). The official split puts 86,524 images in `train_val_list.txt` and 25,596 "
    "in `test_list.txt`, patient-disjoint. NIH's terms place no restriction on the use of the images but "
    "require linking to the NIH download site, citing Wang et al. (CVPR 2017) and acknowledging the NIH "
    "Clinical Center as the data provider — see the last section."
)
WANG_BIBTEX = """```bibtex
@inproceedings{wang2017chestxray8,
  title     = {ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised
               Classification and Localization of Common Thorax Diseases},
  author    = {Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi and
               Summers, Ronald M.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {3462--3471},
  year      = {2017}
}
```"""


def card_metadata(config: ModelConfig, metrics: dict[str, Any], name: str, dataset_id: str) -> ModelCardData:
    """The YAML front matter: license, datasets, tags, pipeline tag and model-index results."""
    synthetic = is_synthetic(metrics)
    dataset_type = "cxr-synthetic" if synthetic else dataset_id
    dataset_name = f"{metrics['dataset']}, {metrics['split']} split"
    results = [
        (f"Mean AUROC ({len(config.labels)} findings)", metrics["mean_auroc"]),
        ("Mean AUROC (8 ChestX-ray8 findings)", metrics["mean_auroc_chestxray8"]),
        *[(f"AUROC {tables.pretty(label)}", m["auroc"]) for label, m in metrics["per_label"].items()],
    ]
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Multi-label chest X-ray classification",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=metrics["split"],
            metric_type="roc_auc",
            metric_name=name,
            metric_value=round(value, 4),
        )
        for name, value in results
        if value is not None
    ]
    return ModelCardData(
        model_name=name,
        license=LICENSE,
        library_name=LIBRARY_NAME,
        base_model=base_model(config),
        pipeline_tag="image-classification",
        tags=TAGS + (["synthetic-data"] if synthetic else []),
        datasets=None if synthetic else [dataset_id],
        metrics=["roc_auc"],
        eval_results=eval_results,
    )


def base_model(config: ModelConfig) -> str | None:
    """The Hub id of the ImageNet weights the trunk started from, or None when it was trained from scratch.

    Training loads timm's default pretrained weights for the trunk name; which those are is read from
    timm's pretrained config (e.g. ``timm/resnet50.a1_in1k``).
    """
    if not config.metadata.get("training", {}).get("pretrained_trunk"):
        return None
    pretrained = timm.models.get_pretrained_cfg(config.trunk)
    return pretrained.hf_hub_id if pretrained and pretrained.hf_hub_id else None


def base_model_sentence(config: ModelConfig) -> str:
    """The trunk's starting point in words, for the card's table."""
    source = base_model(config)
    if source:
        return (
            f"trunk initialised from the ImageNet weights [`{source}`](https://huggingface.co/{source}) (`base_model`)"
        )
    if config.metadata.get("training", {}).get("pretrained_trunk") is False:
        return "trained from scratch (random initialisation): there is no base model"
    return "not recorded in `config.json` (no base model is claimed)"


def how_to_use(repo_id: str | None, revision: str | None) -> tuple[str, str]:
    """The card's loading line and the sentence on pinning it."""
    if repo_id and revision:
        return (
            f'predictor = Predictor.from_pretrained("{repo_id}", revision="{revision}")',
            f"`{revision}` is the revision published with these numbers: pin it, so the weights you evaluated are "
            "the weights you serve.",
        )
    return (
        'predictor = Predictor.from_pretrained("path/to/this/folder")  # config.json + model.safetensors',
        "This folder was staged without an upload, so there is no Hub revision to pin yet: load it from disk, or "
        "publish it and pin the commit hash that `python -m train publish` prints.",
    )


def is_synthetic(metrics: dict[str, Any]) -> bool:
    return metrics["dataset"].startswith("synthetic")


def render_card(
    config: ModelConfig,
    metrics: dict[str, Any],
    name: str,
    repo_id: str | None,
    revision: str | None,
    files: dict[str, int],
    split_info: dict[str, Any] | None,
    dataset_id: str = DEFAULT_DATASET_ID,
    template: Path = CARD_TEMPLATE,
) -> str:
    """The model card: ``model_card.md`` filled with these weights' config and evaluation.

    ``name`` titles the card; ``repo_id`` and ``revision`` (None before an upload) go into "How to use".
    """
    synthetic = is_synthetic(metrics)
    label_set = (
        "the ChestX-ray14 findings"
        if tuple(config.labels) == CHESTXRAY14_LABELS
        else "the ChestX-ray8 findings"
        if tuple(config.labels) == CHESTXRAY8_LABELS
        else "custom"
    )
    load_line, pin_sentence = how_to_use(repo_id, revision)
    card = ModelCard.from_template(
        card_metadata(config, metrics, name, dataset_id),
        template_path=str(template),
        title=name,
        summary=(
            f"Multi-label classifier of {len(config.labels)} findings on frontal chest radiographs, with a Grad-CAM "
            "heatmap for every finding from the same forward pass. Architecture of Wang et al. (CVPR 2017): "
            f"{config.trunk} trunk with log-sum-exp pooling; trained and evaluated with the open-source `cxr` "
            "project (`python -m train fit / evaluate / publish`)."
        ),
        synthetic=synthetic,
        subset_note=report.subset_warning(metrics),
        evaluated_on=evaluated_on(metrics),
        base_model_sentence=base_model_sentence(config),
        trained=config.trained,
        n_labels=len(config.labels),
        label_set=label_set,
        config=config,
        sha256=config.metadata.get("weights_sha256"),
        metrics=metrics,
        headline=tables.with_ci(metrics["mean_auroc"], metrics["mean_auroc_ci"])
        + f" over {len(config.labels)} findings; "
        + tables.with_ci(metrics["mean_auroc_chestxray8"], metrics["mean_auroc_chestxray8_ci"])
        + f" over the 8 ChestX-ray8 findings ({WANG_ARXIV.name}: {WANG_ARXIV.mean_auroc:.3f} over 14)",
        plots=metrics["plots"],
        headline_table=tables.headline_table(metrics),
        per_label_table=tables.per_label_table(metrics),
        reliability_sentence=reliability_paragraph(metrics),
        comparison_table=tables.comparison_table(metrics),
        threshold_sentence=report.threshold_sentence(metrics),
        operating_point_table=tables.operating_point_table(metrics),
        calibration_sentence=report.calibration_sentence(metrics),
        calibration_table=tables.calibration_table(metrics),
        subgroup_sentence=tables.subgroup_gap_sentence(metrics),
        subgroup_table=tables.subgroup_table(metrics),
        localization_section=_demote(report.localization_section(metrics)),
        relabel_section=_demote(report.relabel_section(metrics)),
        training_table=training_table(config),
        split_sentence=split_sentence(split_info, metrics),
        data_paragraph=data_paragraph(metrics),
        install_line=INSTALL_LINE,
        code_url=CODE_URL,
        load_line=load_line,
        pin_sentence=pin_sentence,
        files_table=files_table(files),
        citations=WANG_BIBTEX,
        published_sources=published_sources(),
    )
    return str(card)


def reliability_paragraph(metrics: dict[str, Any]) -> str:
    """Which findings are at chance, in the words the demo's page and About use (test split only)."""
    if metrics["split"] != "test":
        split = metrics["split"]
        return f"Which findings are at chance is judged on the test split; these numbers are from the {split} split."
    verdicts = {label: evidence(m["auroc"], m["auroc_ci"]).verdict for label, m in metrics["per_label"].items()}
    return reliability_sentence(verdicts)


def evaluated_on(metrics: dict[str, Any]) -> str:
    """``NIH ChestX-ray14, test split: 1,234 images of 567 patients`` (+ the subset when not the whole split)."""
    text = (
        f"{metrics['dataset']}, {metrics['split']} split: {metrics['n_images']:,} images of "
        f"{metrics['n_patients']:,} patients"
    )
    subset = metrics.get("subset")
    return f"{text} — evaluated on {subset['description']} only" if subset else text


def published_sources() -> str:
    """One line per published comparison: the exact paper version and table its numbers come from."""
    return "\n".join(f"- {p.name}: {p.citation} Numbers: {p.source}." for p in PUBLISHED)


def _demote(section: str) -> str:
    """A report section (## heading) as a subsection (###) of the card's Results."""
    return "#" + section if section.startswith("## ") else section


def training_table(config: ModelConfig) -> str:
    """``metadata["training"]`` as a two-column table; nested settings as ``key value`` lists."""
    training = config.metadata.get("training")
    if not training:
        return "No training record in `config.json` (`metadata.training` is empty)."
    rows = [[key.replace("_", " "), _setting(value)] for key, value in training.items()]
    rows.append(["per-label thresholds", "chosen on validation (F1-optimal); see the operating-point table"])
    return tables.table(["Setting", "Value"], rows, "ll")


def _setting(value: Any, nested: bool = False) -> str:
    """A training setting for a table cell: floats to 4 significant digits, dicts as ``key value, …``."""
    if isinstance(value, dict):
        text = ", ".join(f"{tables.pretty(str(k))} {_setting(v, True)}" for k, v in value.items())
        return f"({text})" if nested else text
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_setting(v) for v in value)
    return str(value).replace("|", "/")


def split_sentence(split_info: dict[str, Any] | None, metrics: dict[str, Any]) -> str:
    if not split_info:
        return f"Split: {metrics.get('split_source', 'not recorded')}."
    counts = ", ".join(f"{len(split_info[name]):,} {name}" for name in ("train", "val", "test") if name in split_info)
    extras = {k: v for k, v in split_info.items() if k not in ("train", "val", "test", "format", "subset")}
    detail = f" ({', '.join(f'{k} {v}' for k, v in extras.items())})" if extras else ""
    return (
        f"Split (`{SPLIT_FILE}`): {counts} images{detail}, {describe_subset(split_info.get('subset'))}. Test images "
        "come from the official test list; validation patients are held out of `train_val_list.txt`, so no "
        "patient is in two splits."
    )


def data_paragraph(metrics: dict[str, Any]) -> str:
    if is_synthetic(metrics):
        return (
            "Synthetic images in NIH's layout written by `python -m train synth`: chest-like backgrounds with a "
            "distinct drawn pattern per finding inside a known box (the boxes are the localization truth). They "
            "test the pipeline end to end; the real data this card is written for is:\n\n" + NIH_DATA
        )
    return NIH_DATA


def files_table(files: dict[str, int]) -> str:
    """What the repo holds: every uploaded file with its size and purpose."""
    rows = [[f"`{CARD_FILE}`", "", FILE_DESCRIPTIONS[CARD_FILE]]]
    for name, size in sorted(files.items()):
        rows.append([f"`{name}`", _size(size), _describe(name)])
    return tables.table(["File", "Size", "What"], rows, "lrl")


def _describe(name: str) -> str:
    if name.startswith(f"{EVALUATION_DIR}/"):
        inner = name.split("/", 1)[1]
        return {
            METRICS_FILE: "the same as metrics.json, next to the report",
            "report.md": "the evaluation report (these tables, with more detail)",
            "predictions.csv": "every evaluated image's probabilities, to recompute any metric",
        }.get(inner, "evaluation plot" if inner.endswith(".png") else "evaluation output")
    if name.endswith(".png"):
        return "training curves"
    return FILE_DESCRIPTIONS.get(name, "training record")


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""
