"""``python -m train evaluate`` end to end on a small synthetic NIH-layout dataset.

The numbers in metrics.json are recomputed independently: probabilities from cxr's Predictor (the
app's road), AUROC from scikit-learn, boxes counted from the CSV.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxr.cam import upsample_map
from cxr.config import ModelConfig
from cxr.io import load_image
from cxr.labels import CHESTXRAY8_LABELS
from cxr.predictor import Predictor
from cxr.preprocess import Letterbox, preprocess
from cxr.weights import WEIGHTS_FILE, WeightsError, load_config, load_model, save_model, sha256_of
from tests.conftest import make_model
from train.__main__ import main as train_main
from train.data.nih import find_images, label_matrix, official_split, read_bbox_list
from train.data.synth import SynthConfig, generate
from train.evaluation.evaluate import save_config_keeping_weights
from train.evaluation.localization import LocalizationCase, evaluate_localization

# Thresholds away from 0.5, so that converting them under new temperatures is a real change.
SMALL = ModelConfig(trunk="resnet18", image_size=64, thresholds=tuple(np.linspace(0.3, 0.7, 14).round(3)))


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), SynthConfig(patients=40, size=96, seed=3), progress=False)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return save_model(make_model(SMALL, seed=1), tmp_path / "weights")


def run_evaluate(weights: Path, data: Path, *extra: str) -> dict:
    argv = ["evaluate", "--weights", str(weights), "--data-dir", str(data), "--workers", "0", "--bootstrap", "50"]
    assert train_main([*argv, *extra]) == 0
    return json.loads((weights / "evaluation" / "metrics.json").read_text())


def test_metrics_equal_an_independent_computation_through_the_predictor(weights: Path, synth_data: Path) -> None:
    metrics = run_evaluate(weights, synth_data, "--update-config")
    test = official_split(synth_data).test
    images = find_images(synth_data)
    predictor = Predictor.from_pretrained(weights, device="cpu")
    expected = np.stack([p.probabilities for p in predictor.predict_batch([images[r.image] for r in test])])
    y = label_matrix(test, predictor.labels)

    with open(weights / "evaluation" / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "patient_id", *predictor.labels]
    assert [row[0] for row in rows[1:]] == [r.image for r in test]
    np.testing.assert_allclose(np.array([row[2:] for row in rows[1:]], dtype=float), expected, atol=2e-6)

    assert metrics["n_images"] == len(test)
    assert metrics["n_patients"] == len({r.patient_id for r in test})
    aurocs = []
    for k, label in enumerate(predictor.labels):
        m = metrics["per_label"][label]
        assert m["n_positive"] == y[:, k].sum()
        if 0 < y[:, k].sum() < len(y):
            aurocs.append(roc_auc_score(y[:, k], expected[:, k]))
            assert m["auroc"] == pytest.approx(aurocs[-1], abs=1e-6)
            lo, hi = m["auroc_ci"]
            assert lo <= m["auroc"] <= hi
        called = expected[:, k] >= m["threshold"]
        assert m["confusion"]["tp"] == (called & (y[:, k] == 1)).sum()
        assert m["confusion"]["fp"] == (called & (y[:, k] == 0)).sum()
    assert metrics["mean_auroc"] == pytest.approx(np.mean(aurocs), abs=1e-6)
    cxr8 = [metrics["per_label"][label]["auroc"] for label in CHESTXRAY8_LABELS]
    assert metrics["mean_auroc_chestxray8"] == pytest.approx(np.mean([a for a in cxr8 if a is not None]))

    # Every box of a test image is scored, once, and the numbers equal Wang's protocol recomputed here from
    # the signed class activation maps of the predictor's own model.
    boxes = read_bbox_list(synth_data / "BBox_List_2017.csv")
    assert metrics["localization"] == independent_localization(predictor, boxes, images)
    assert metrics["localization"]["all"]["n_boxes"] == len(boxes)
    assert metrics["dataset"] == "synthetic (python -m train synth)"
    assert "relabels" not in metrics and metrics["relabels_skipped"]

    # The app reads the headline numbers from config.json; the weights file and its checksum are untouched.
    config = load_config(weights)
    assert config.metadata["evaluation"]["mean_auroc"] == metrics["mean_auroc"]
    assert config.metadata["evaluation"]["per_label_auroc"]["Mass"] == metrics["per_label"]["Mass"]["auroc"]
    assert config.metadata["evaluation"]["per_label_auroc_ci"]["Mass"] == metrics["per_label"]["Mass"]["auroc_ci"]
    assert config.metadata["weights_sha256"] == sha256_of(weights / WEIGHTS_FILE)
    load_model(weights)  # still passes the checksum

    report = (weights / "evaluation" / "report.md").read_text()
    assert f"{metrics['mean_auroc']:.3f}" in report and "Wang et al. 2017" in report and "NOT the official" in report
    for name in metrics["plots"].values():
        assert name in report
        with Image.open(weights / "evaluation" / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def independent_localization(predictor: Predictor, boxes: list, images: dict[str, Path]) -> dict:
    """Wang's protocol on maps computed by hand: sum_c w_c A_c of each box's label, at the image's size."""
    by_image: dict[str, dict[str, list]] = {}
    for box in boxes:
        by_image.setdefault(box.image, {}).setdefault(box.label, []).append((box.x, box.y, box.w, box.h))
    cases = []
    for name in sorted(by_image):
        image = load_image(images[name])
        with torch.no_grad():
            features = predictor.model.forward_features(preprocess(image, predictor.config))[0]
            weights = predictor.model.fc.weight.detach()
        for label, truth in sorted(by_image[name].items()):
            signed = torch.einsum("c,chw->hw", weights[predictor.labels.index(label)], features).numpy()
            heatmap = upsample_map(signed, Letterbox(*image.shape))
            cases.append(LocalizationCase(name, label, heatmap, tuple(truth)))
    return json.loads(json.dumps(evaluate_localization(cases)))


def _at_or_above(prediction) -> set[str]:
    scores = zip(prediction.labels, prediction.probabilities, prediction.thresholds, strict=True)
    return {label for label, p, t in scores if p >= t}


def test_calibration_stores_temperatures_and_biases_without_changing_decisions(weights: Path, synth_data: Path) -> None:
    before = load_config(weights)
    metrics = run_evaluate(weights, synth_data, "--calibrate", "--update-config", "--recarve-val", "0")
    assert metrics["split_source"].endswith("validation re-carved on request: 0.1 of train_val patients, seed 0")
    after = load_config(weights)
    scaling = metrics["calibration_fit"]
    assert list(after.temperatures) == [scaling["temperatures"][label] for label in after.labels]
    assert list(after.biases) == [scaling["biases"][label] for label in after.labels]
    assert list(after.thresholds) == [scaling["thresholds"][label] for label in after.labels]
    assert after.temperatures != before.temperatures and after.biases != before.biases
    # A threshold moves exactly where the scaling did.
    moved = [a != b for a, b in zip(after.thresholds, before.thresholds, strict=True)]
    refit = [
        (t1, b1) != (t0, b0)
        for t1, b1, t0, b0 in zip(after.temperatures, after.biases, before.temperatures, before.biases, strict=True)
    ]
    assert moved == refit and sum(moved) >= 5
    images = find_images(synth_data)
    test = [images[r.image] for r in official_split(synth_data).test]
    old = Predictor(make_model(SMALL, seed=1), device="cpu").predict_batch(test)
    new = Predictor(load_model(weights), device="cpu").predict_batch(test)
    # The same decisions (probability at or above threshold); `positive` also leaves out the labels the stored
    # test evaluation now finds at chance, which the old weights did not record.
    assert [_at_or_above(p) for p in old] == [_at_or_above(p) for p in new]
    assert all(set(p.positive) == _at_or_above(p) - set(p.at_chance) for p in new)
    assert scaling["stored_in_config"] is True
    assert metrics["calibration"]["mean_ece"] == pytest.approx(scaling["mean_ece_after"])


def test_without_update_config_the_weights_folder_is_untouched(weights: Path, synth_data: Path, tmp_path) -> None:
    config_bytes = (weights / "config.json").read_bytes()
    out = tmp_path / "elsewhere"
    argv = ["evaluate", "--weights", str(weights), "--data-dir", str(synth_data), "--workers", "0"]
    assert train_main([*argv, "--bootstrap", "20", "--out", str(out), "--calibrate", "--recarve-val", "0"]) == 0
    assert (weights / "config.json").read_bytes() == config_bytes
    assert not (weights / "evaluation").exists()
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()


def test_validation_is_never_re_carved_with_a_guessed_seed(weights: Path, synth_data: Path, capsys) -> None:
    argv = ["evaluate", "--weights", str(weights), "--data-dir", str(synth_data), "--workers", "0"]
    for needs_val in (["--calibrate"], ["--split", "val"]):
        assert train_main([*argv, *needs_val]) == 2
        assert "re-carving it with a guessed seed" in capsys.readouterr().err
    assert not (weights / "evaluation").exists()


def test_missing_images_and_bad_folders_give_one_clear_error(weights: Path, synth_data: Path, tmp_path, capsys) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(synth_data, partial, ignore=shutil.ignore_patterns("0000001*.png"))
    assert train_main(["evaluate", "--weights", str(weights), "--data-dir", str(partial), "--workers", "0"]) == 2
    assert "images are neither under" in capsys.readouterr().err
    assert train_main(["evaluate", "--weights", str(tmp_path), "--data-dir", str(synth_data)]) == 2
    assert "not a cxr weights folder" in capsys.readouterr().err


def test_config_is_not_rewritten_when_the_weights_file_changed(weights: Path) -> None:
    config = load_config(weights)
    (weights / WEIGHTS_FILE).write_bytes((weights / WEIGHTS_FILE).read_bytes() + b"\0")
    with pytest.raises(WeightsError, match="does not match"):
        save_config_keeping_weights(weights, config.replace(metadata={**config.metadata, "x": 1}))
