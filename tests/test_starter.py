"""The bundled starter model (cxr/starter): its recorded numbers reproduce, it discriminates, it is checked on load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.predictor import Predictor
from cxr.sources import STARTER_DIR
from cxr.weights import WeightsError, load_config, load_model
from tests.conftest import NIH_EXAMPLES
from train.__main__ import main as train_main
from train.publishing.card import reliability_paragraph

pytestmark = pytest.mark.skipif(not (STARTER_DIR / "config.json").is_file(), reason="no bundled starter model")


def test_starter_records_real_data_provenance() -> None:
    config = load_config(STARTER_DIR)
    training = config.metadata["training"]
    assert config.trained and config.trunk == "resnet50" and training["pretrained_trunk"] is False
    assert training["dataset"] == "NIH ChestX-ray14"
    assert training["data_subset"]["train_val"] == {"used": 632, "official": 86524}
    assert training["images"]["train"] + training["images"]["val"] == 632
    evaluation = config.metadata["evaluation"]
    assert (evaluation["split"], evaluation["n_images"]) == ("test", 106)
    assert evaluation["mean_auroc_ci"][0] > 0.5  # bundled only because its 95% CI lies above chance


@pytest.mark.slow  # 106 + 127 real radiographs through a resnet50 at 384 px on the CPU
def test_evaluate_reproduces_the_recorded_test_numbers(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    argv = ["evaluate", "--weights", str(STARTER_DIR), "--data-dir", str(shared_data / "nih-cxr14")]
    assert train_main([*argv, "--available-only", "--workers", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    recorded = load_config(STARTER_DIR).metadata["evaluation"]
    card_metrics = json.loads((STARTER_DIR / "metrics.json").read_text())
    assert metrics["n_images"] == recorded["n_images"] == 106
    assert metrics["mean_auroc"] == pytest.approx(recorded["mean_auroc"], abs=1e-6)
    assert metrics["mean_auroc_ci"] == pytest.approx(recorded["mean_auroc_ci"], abs=1e-6)
    for label, auroc in recorded["per_label_auroc"].items():
        assert metrics["per_label"][label]["auroc"] == pytest.approx(auroc, abs=1e-6), label
        assert metrics["per_label"][label]["auroc_ci"] == pytest.approx(recorded["per_label_auroc_ci"][label], abs=1e-6)
    assert metrics["calibration"]["mean_ece"] == pytest.approx(card_metrics["calibration"]["mean_ece"], abs=1e-6)
    low, high = recorded["mean_auroc_ci"]
    card = (STARTER_DIR / "README.md").read_text(encoding="utf-8")
    assert f"| Mean AUROC, 14 labels | {recorded['mean_auroc']:.3f} ({low:.3f}–{high:.3f}) |" in card
    assert "106 of the 25,596 official test images" in card
    assert card.count(reliability_paragraph(metrics)) == 1  # the labels at chance, as the page and About say


def test_probabilities_differ_across_real_images() -> None:
    predictor = Predictor.from_pretrained(STARTER_DIR, device="cpu")
    probabilities = np.stack([p.probabilities for p in predictor.predict_batch(NIH_EXAMPLES)])
    assert probabilities.shape == (len(NIH_EXAMPLES), 14)
    # Each label's probability moves between images by more than rounding: the model looks at the pixels.
    assert (probabilities.max(axis=0) - probabilities.min(axis=0)).max() > 0.02


def test_a_corrupted_bundled_file_fails_with_the_weights_error(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(STARTER_DIR, tmp_path / "starter"))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"does not match the SHA-256 recorded in config\.json"):
        load_model(copy)
