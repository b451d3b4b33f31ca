"""`python -m train evaluate --scores`: each label map on a small real fixture, and the starter's known answer.

Fixtures are real NIH images laid out as each dataset distributes its files, with label files written in that
dataset's own format from the images' NIH labels (Data_Entry_2017_v2020.csv.gz).
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from PIL import Image

from cxr.cli import main as cxr_main
from train.__main__ import main as train_main
from train.evaluation.label_maps import CHEXPERT_COLUMNS, PADCHEST_NAMES

ROOT = Path(__file__).resolve().parents[1]
CHEXPERT_HEADER = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
MIMIC_HEADER = ["subject_id", "study_id", *CHEXPERT_HEADER[5:]]
NIH_TO_CHEXPERT = {nih: col for col, nih in CHEXPERT_COLUMNS.items()}
NIH_TO_PADCHEST = {nih: name for name, nih in PADCHEST_NAMES.items()}


@pytest.fixture(scope="module")
def nih_truth(shared_data: Path) -> dict[str, dict]:
    """Image name -> its Data_Entry row, for the shared images."""
    nih = shared_data / "nih-cxr14"
    with gzip.open(nih / "Data_Entry_2017_v2020.csv.gz", "rt", encoding="utf-8") as f:
        entries = {row["Image Index"]: row for row in csv.DictReader(f)}
    return {p.name: entries[p.name] for p in sorted((nih / "images").glob("*.png")) if p.name in entries}


def findings(entry: dict) -> set[str]:
    return set(entry["Finding Labels"].split("|"))


def pick(nih_truth: dict, shared_data: Path, n: int) -> list[tuple[Path, dict]]:
    """``n`` images, the ones with findings first, so the fixtures have positives."""
    names = sorted(nih_truth, key=lambda name: (findings(nih_truth[name]) == {"No Finding"}, name))[:n]
    return [(shared_data / "nih-cxr14" / "images" / name, nih_truth[name]) for name in names]


def score(folder: Path, out: Path, weights: Path) -> None:
    assert cxr_main(["score", str(folder), "--out", str(out), "--weights", str(weights), "--no-progress"]) == 0


def evaluate(scores: Path, labels: Path, label_map: str, out: Path, *extra: str) -> dict:
    argv = ["evaluate", "--scores", str(scores), "--labels", str(labels), "--label-map", label_map, "--out", str(out)]
    assert train_main([*argv, "--bootstrap", "50", *extra]) == 0
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# Evaluation of")
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def chexpert_fixture(root: Path, images: list[tuple[Path, dict]]) -> Path:
    """CheXpert-v1.0-small/valid/patientN/studyM/view1_frontal.jpg (the same name in every study) and valid.csv;
    the 7th image is a lateral and the first has an uncertain Edema. Returns valid.csv."""
    rows = []
    for i, (source, entry) in enumerate(images):
        lateral = i == 6
        name = "view2_lateral.jpg" if lateral else "view1_frontal.jpg"
        relative = f"CheXpert-v1.0-small/valid/patient{64541 + i // 2:05d}/study{i % 2 + 1}/{name}"
        (root / relative).parent.mkdir(parents=True)
        Image.open(source).convert("L").save(root / relative, quality=95)
        values = {col: "" for col in CHEXPERT_HEADER[5:]}
        for nih, col in NIH_TO_CHEXPERT.items():
            values[col] = "1.0" if nih in findings(entry) else "0.0"
        if i == 0:
            values["Edema"] = "-1.0"  # one uncertain label
        rows.append(
            {"Path": relative, "Sex": "Male", "Age": "60", "Frontal/Lateral": "Lateral" if lateral else "Frontal",
             "AP/PA": "" if lateral else "PA", **values}
        )  # fmt: skip
    labels = root / "CheXpert-v1.0-small" / "valid.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, CHEXPERT_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return labels


def test_chexpert_paths_views_uncertain_and_patients(nih_truth, shared_data, tiny_weights, tmp_path):
    images = pick(nih_truth, shared_data, 7)
    root = tmp_path / "chexpert"
    labels = chexpert_fixture(root, images)
    score(root, tmp_path / "scores.parquet", tiny_weights)

    zeros = evaluate(tmp_path / "scores.parquet", labels, "chexpert", tmp_path / "zeros")
    assert zeros["labels"] == ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax",
                               "Consolidation", "Edema"]  # fmt: skip
    assert zeros["n_images"] == 6 and zeros["n_patients"] == 3  # patient64541-64543; the lateral left out
    assert zeros["external"]["views_matched"] == {"frontal": 6, "lateral": 1, "unknown": 0}
    frontal = [entry for _, entry in images[:6]]
    for nih in zeros["labels"]:
        expected = sum(nih in findings(e) for e in frontal) - (nih == "Edema" and "Edema" in findings(frontal[0]))
        assert zeros["per_label"][nih]["n_positive"] == expected, nih
    ones = evaluate(tmp_path / "scores.parquet", labels, "chexpert", tmp_path / "ones", "--uncertain", "ones")
    assert ones["per_label"]["Edema"]["n_positive"] == sum("Edema" in findings(e) for e in frontal[1:]) + 1
    ignore = evaluate(tmp_path / "scores.parquet", labels, "chexpert", tmp_path / "ign", "--uncertain", "ignore")
    assert ignore["n_images"] == 5 and ignore["external"]["uncertain_images_left_out"] == 1
    lateral = evaluate(tmp_path / "scores.parquet", labels, "chexpert", tmp_path / "lat", "--views", "lateral")
    assert lateral["n_images"] == 1
    thresholds = json.loads((tiny_weights / "config.json").read_text())["thresholds"]
    assert zeros["per_label"]["Atelectasis"]["threshold"] == thresholds[0]  # the weights' own, not refitted


def test_mimic_study_labels_and_metadata_views(nih_truth, shared_data, tiny_weights, tmp_path):
    """files/p10/p<subject>/s<study>/<dicom_id>.jpg, labels per study, ViewPosition from the metadata file."""
    images = pick(nih_truth, shared_data, 4)
    root = tmp_path / "mimic-cxr-jpg" / "2.0.0"
    label_rows, meta_rows = [], []
    for i, (source, entry) in enumerate(images):
        subject, study, dicom = 10000032 + i, 50000000 + i, f"{i:08x}-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd"
        target = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        target.parent.mkdir(parents=True)
        Image.open(source).convert("L").save(target)
        values = {col: "" for col in MIMIC_HEADER[2:]}
        for nih, col in NIH_TO_CHEXPERT.items():
            values[col] = "1.0" if nih in findings(entry) else ""  # MIMIC leaves negatives mostly blank
        label_rows.append({"subject_id": subject, "study_id": study, **values})
        meta_rows.append(
            {"dicom_id": dicom, "subject_id": subject, "study_id": study, "ViewPosition": "LL" if i == 3 else "PA"}
        )
    labels, metadata = root / "mimic-cxr-2.0.0-chexpert.csv", root / "mimic-cxr-2.0.0-metadata.csv"
    for path, rows in ((labels, label_rows), (metadata, meta_rows)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    score(root / "files", tmp_path / "scores.parquet", tiny_weights)
    metrics = evaluate(tmp_path / "scores.parquet", labels, "mimic", tmp_path / "m", "--metadata", str(metadata))
    assert metrics["n_images"] == 3 and metrics["external"]["views_matched"]["lateral"] == 1
    for nih in metrics["labels"]:
        assert metrics["per_label"][nih]["n_positive"] == sum(nih in findings(e) for _, e in images[:3])


def test_padchest_names_and_projection(nih_truth, shared_data, tiny_weights, tmp_path):
    """PadChest: <ImageID>.png in one folder, Labels as a Python-list literal, Projection PA / L."""
    images = pick(nih_truth, shared_data, 5)
    folder = tmp_path / "padchest" / "images"
    folder.mkdir(parents=True)
    rows = []
    for i, (source, entry) in enumerate(images):
        image_id = f"2168401113669640138295431665120133381357{i:05d}_02-094-102.png"
        Image.open(source).save(folder / image_id)
        names = [NIH_TO_PADCHEST[f] for f in sorted(findings(entry)) if f in NIH_TO_PADCHEST] or ["normal"]
        rows.append({"ImageID": image_id, "PatientID": f"P{i // 2}", "Projection": "L" if i == 4 else "PA",
                     "Labels": repr(names)})  # fmt: skip
    labels = tmp_path / "padchest" / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    score(folder, tmp_path / "scores.parquet", tiny_weights)
    metrics = evaluate(tmp_path / "scores.parquet", labels, "padchest", tmp_path / "p")
    assert metrics["labels"] == list(PADCHEST_NAMES.values()) and metrics["n_images"] == 4
    assert metrics["n_patients"] == 2
    for nih in metrics["labels"]:
        assert metrics["per_label"][nih]["n_positive"] == sum(nih in findings(e) for _, e in images[:4])


def test_known_answer_starter_on_the_shared_nih_test_images(nih_truth, shared_data, tmp_path):
    """Scoring the shared NIH test images with the starter and `--label-map nih` gives its recorded mean AUROC."""
    starter = ROOT / "cxr" / "starter"
    recorded = json.loads((starter / "config.json").read_text())["metadata"]["evaluation"]
    test = set((shared_data / "nih-cxr14" / "test_list.txt").read_text().split())
    images = [shared_data / "nih-cxr14" / "images" / name for name in sorted(nih_truth) if name in test]
    assert len(images) == recorded["n_images"] == 106
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in images), encoding="utf-8")
    assert cxr_main(["score", str(manifest), "--out", str(tmp_path / "s.parquet"), "--weights", str(starter),
                     "--no-progress", "--batch-size", "16"]) == 0  # fmt: skip
    labels = shared_data / "nih-cxr14" / "Data_Entry_2017_v2020.csv.gz"
    argv = ["evaluate", "--scores", str(tmp_path / "s.parquet"), "--labels", str(labels), "--label-map", "nih"]
    assert train_main([*argv, "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 106 and metrics["n_patients"] == recorded["n_patients"]
    assert metrics["mean_auroc"] == pytest.approx(recorded["mean_auroc"], abs=1e-3)
    assert metrics["mean_auroc_ci"] == pytest.approx(recorded["mean_auroc_ci"], abs=1e-2)
