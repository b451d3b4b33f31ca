"""``evaluate --available-only`` on the real NIH metadata and the few real NIH images at hand.

The shared data hold all of NIH's metadata but only 29 images, 13 of them in the official test split
(5 with radiologists' boxes). Counts are checked against the CSV files read independently here.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from cxr.weights import save_model
from tests.conftest import TINY_CONFIG, make_model
from train.__main__ import main as train_main

METADATA = (
    "Data_Entry_2017_v2020.csv",
    "train_val_list.txt",
    "test_list.txt",
    "BBox_List_2017.csv",
    "google2019_nih-chest-xray-labels.csv.gz",
)


@pytest.fixture(scope="module")
def nih_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nih")
    for name in METADATA:
        (root / name).symlink_to(shared_data / "nih-cxr14" / name)
    (root / "images").mkdir()
    for image in sorted((shared_data / "samples" / "nih").glob("*.png")):
        (root / "images" / image.name).symlink_to(image)
    return root


def test_smoke_evaluation_on_real_nih_images_boxes_and_adjudicated_labels(nih_dir: Path, tmp_path: Path) -> None:
    weights = save_model(make_model(TINY_CONFIG), tmp_path / "weights")
    argv = ["evaluate", "--weights", str(weights), "--data-dir", str(nih_dir), "--workers", "0"]
    assert train_main([*argv, "--bootstrap", "50", "--available-only"]) == 0
    metrics = json.loads((weights / "evaluation" / "metrics.json").read_text())

    present = {p.name for p in (nih_dir / "images").glob("*.png")}
    test = [name for name in (nih_dir / "test_list.txt").read_text().split() if name in present]
    description = f"{len(test)} of the 25,596 official test images (test_list.txt)"
    assert metrics["subset"] == {"used": len(test), "official": 25596, "description": description}
    assert metrics["n_images"] == len(test) == 13
    assert metrics["dataset"] == "NIH ChestX-ray14"

    with open(nih_dir / "BBox_List_2017.csv", newline="") as f:
        boxes = [row for row in list(csv.reader(f))[1:] if row and row[0] in test]
    per_label: dict[str, int] = {}
    for row in boxes:
        label = "Infiltration" if row[1] == "Infiltrate" else row[1]
        per_label[label] = per_label.get(label, 0) + 1
    localization = metrics["localization"]
    assert localization["all"]["n_boxes"] == len(boxes) == 12
    assert {label: v["n_boxes"] for label, v in localization["per_label"].items()} == per_label
    assert all(0 <= a <= 1 for v in localization["per_label"].values() for a in v["iobb"]["180"]["accuracy"])

    with gzip.open(nih_dir / "google2019_nih-chest-xray-labels.csv.gz", "rt", newline="") as f:
        adjudicated = [row for row in csv.DictReader(f) if row["Image Index"] in test]
    # None of the sample images was adjudicated (tests/test_evaluate_relabels.py covers the computation).
    assert adjudicated == [] and "relabels" not in metrics
    assert metrics["relabels_skipped"] == "no image of the test split has an adjudicated label"

    # With 13 images most findings have one class only: their AUROC is undefined, never a made-up 0.5.
    for m in metrics["per_label"].values():
        assert (m["auroc"] is None) == (m["n_positive"] in (0, len(test)))
    report = (weights / "evaluation" / "report.md").read_text()
    assert "Evaluated on 13 of the 25,596 official test images (test_list.txt)**, not the whole test split" in report
