"""cxr.serving: which weights the Space serves, what it says about them, and what its API answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Predictor
from cxr.serving import (
    DEFAULT_MODEL_REPO,
    DEFAULT_MODEL_REVISION,
    WeightsSource,
    about_markdown,
    cam_record,
    choose_weights_source,
    load_served_model,
    model_info,
    no_weights_message,
    prediction_record,
    trained_on,
)
from cxr.weights import WeightsError, load_config, save_model, sha256_of
from tests.conftest import NIH_EXAMPLES, TINY_CONFIG, make_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODEL_CARD = "---\nlicense: mit\ntags: [chest-x-ray]\n---\n# The model card\n\nFrontal views only.\n"
TRAINING = {
    "dataset": "NIH ChestX-ray14",
    "split": "official train_val, patient-wise",
    "epochs": 12,
    "val_mean_auroc": 0.8312,
    "schedule": {"kind": "cosine"},  # nested: left to the model card
}
EVALUATION = {
    "dataset": "NIH ChestX-ray14",
    "split": "official test",
    "n_images": 25596,
    "mean_auroc": 0.8207,
    "mean_auroc_ci": [0.8161, 0.8250],
    "mean_auroc_chestxray8": 0.8051,
    "per_label_auroc": {label: 0.7 + 0.01 * i for i, label in enumerate(CHESTXRAY14_LABELS)},
}


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        ("given/dir", {"CXR_WEIGHTS": "env/dir", "CXR_MODEL_REPO": "a/b"}, WeightsSource("given/dir", is_local=True)),
        (None, {"CXR_WEIGHTS": "env/dir", "CXR_MODEL_REPO": "a/b"}, WeightsSource("env/dir", is_local=True)),
        (None, {"CXR_MODEL_REPO": "a/b", "CXR_MODEL_REVISION": "v2"}, WeightsSource("a/b", "v2")),
        (None, {"CXR_MODEL_REPO": "a/b"}, WeightsSource("a/b", None)),  # another repo: no borrowed tag
        (None, {}, WeightsSource(DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION)),
        (None, {"CXR_MODEL_REVISION": "abc123"}, WeightsSource(DEFAULT_MODEL_REPO, "abc123")),
        (None, {"CXR_WEIGHTS": ""}, WeightsSource(DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION)),
    ],
)
def test_weights_source_precedence(flag, env, expected) -> None:
    assert choose_weights_source(flag, env) == expected


def test_missing_local_folder_is_not_mistaken_for_a_hub_repo(monkeypatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="there is no folder org/name"):
        load_served_model(WeightsSource("org/name", is_local=True))


def test_no_weights_message_names_the_failure_and_both_remedies() -> None:
    source = WeightsSource("org/name", "v1")
    text = no_weights_message(source, WeightsError("Hub repo org/name does not exist"))
    assert "Hub repo org/name does not exist" in text and "org/name at revision v1" in text
    assert "--weights DIR" in text and "CXR_WEIGHTS" in text and "make-untrained-weights" in text
    assert "CXR_MODEL_REPO" in text and "CXR_MODEL_REVISION" in text and "HF_TOKEN" in text


@pytest.fixture(scope="module")
def documented_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained-looking weights whose config records training and evaluation, with a model card."""
    config = TINY_CONFIG.replace(
        trained=True,
        thresholds=[0.2 + 0.02 * i for i in range(14)],
        metadata={"description": "A test model.", "training": TRAINING, "evaluation": EVALUATION},
    )
    folder = save_model(make_model(config, seed=3), tmp_path_factory.mktemp("documented") / "weights")
    (folder / "README.md").write_text(MODEL_CARD, encoding="utf-8")
    return folder


def _offline_hub_cache(cache: Path, repo_id: str, tag: str, folder: Path) -> None:
    """Lay out a Hub snapshot the way huggingface_hub's cache stores a downloaded tag."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / tag).write_text(COMMIT)
    shutil.copytree(folder, repo / "snapshots" / COMMIT)


def test_hub_weights_load_from_the_cache_offline_with_commit_card_and_checksum(
    documented_weights: Path, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "hub"
    _offline_hub_cache(cache, "org/cxr-test", "v0.1.0", documented_weights)
    # huggingface_hub reads these at import; patch what HF_HUB_OFFLINE=1 and HF_HUB_CACHE would have set.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    served = load_served_model(WeightsSource("org/cxr-test", "v0.1.0"), device="cpu")

    assert served.commit == COMMIT
    assert served.weights_sha256 == sha256_of(documented_weights / "model.safetensors")
    assert served.model_card == "# The model card\n\nFrontal views only."  # front matter stripped
    reference = Predictor.from_pretrained(documented_weights, device="cpu").predict(NIH_EXAMPLES[0])
    np.testing.assert_array_equal(served.predictor.predict(NIH_EXAMPLES[0]).probabilities, reference.probabilities)
    about = about_markdown(served)
    assert "Hub repo org/cxr-test at revision v0.1.0" in about and COMMIT[:12] in about


def test_about_shows_the_recorded_numbers(documented_weights: Path) -> None:
    served = load_served_model(WeightsSource(str(documented_weights), is_local=True), device="cpu")
    about = about_markdown(served)
    assert served.commit is None and served.model_card.startswith("# The model card")
    assert f"local folder {documented_weights.name}" in about and str(documented_weights.parent) not in about
    assert served.weights_sha256 in about
    assert "mean AUROC **0.821** (95% CI 0.816–0.825) over all labels" in about
    assert "**0.805** over the 8 ChestX-ray8 labels" in about  # no interval recorded for it: none shown
    assert "(NIH ChestX-ray14, official test split, 25596 images)" in about
    assert "- val mean auroc: 0.831" in about and "schedule" not in about
    assert "| Pleural_Thickening | 0.440 | 0.820 |" in about  # threshold and AUROC of label 13
    assert trained_on(served.config) == (
        "Trained on NIH ChestX-ray14 — split: official train_val, patient-wise; 12 epochs."
    )


def test_about_without_metadata_says_what_is_unknown(tmp_path: Path) -> None:
    folder = save_model(make_model(TINY_CONFIG.replace(trained=True, metadata={})), tmp_path / "bare")
    served = load_served_model(WeightsSource(str(folder), is_local=True), device="cpu")
    about = about_markdown(served)
    assert "The weights do not record what they were trained on." in about
    assert "None" not in about and "Evaluation" not in about
    assert about.count("| 0.500 |") == 14 and "AUROC" not in about
    assert "untrained" in trained_on(load_config(folder).replace(trained=False))


def test_api_records_carry_every_label_and_the_weights_identity(tiny_weights: Path) -> None:
    served = load_served_model(WeightsSource(str(tiny_weights), is_local=True), device="cpu")
    prediction = served.predictor.predict(NIH_EXAMPLES[2])
    record = prediction_record(prediction, served)
    assert record["labels"] == list(CHESTXRAY14_LABELS)
    assert record["probabilities"] == prediction.probability_by_label
    assert list(record["thresholds"].values()) == pytest.approx(prediction.thresholds.tolist())
    assert record["positive"] == prediction.positive
    assert record["overlay_label"] == CHESTXRAY14_LABELS[int(np.argmax(prediction.probabilities))]
    assert record["model"] == {
        "source": tiny_weights.name,
        "revision": None,
        "commit": None,
        "weights_sha256": sha256_of(tiny_weights / "model.safetensors"),
        "trained": False,
    }
    cam = cam_record(prediction, "Mass", served)
    i = CHESTXRAY14_LABELS.index("Mass")
    assert cam["probability"] == pytest.approx(float(prediction.probabilities[i]))
    assert cam["positive"] == ("Mass" in prediction.positive) and cam["caption"] == prediction.caption("Mass")
    with pytest.raises(KeyError, match="Unknown label"):
        cam_record(prediction, "Fracture", served)
    info = model_info(served)
    assert info["labels"] == list(CHESTXRAY14_LABELS) and info["trained"] is False and info["training"] is None
