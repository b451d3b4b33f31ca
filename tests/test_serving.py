"""cxr.serving: which weights the Space serves, what it says about them, and what its API answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import CHESTXRAY14_LABELS, display_name
from cxr.predictor import Predictor
from cxr.provenance import trained_on
from cxr.serving import (
    about_markdown,
    cam_record,
    load_served_model,
    model_info,
    page_card,
    prediction_record,
    weights_banner,
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
    "split": "test",
    "n_images": 25596,
    "mean_auroc": 0.8207,
    "mean_auroc_ci": [0.8161, 0.8250],
    "mean_auroc_chestxray8": 0.8051,
    "per_label_auroc": {label: 0.7 + 0.01 * i for i, label in enumerate(CHESTXRAY14_LABELS)},
    # Atelectasis's interval includes 0.5: at chance; every other label's lies above it.
    "per_label_auroc_ci": {label: [0.45 if i == 0 else 0.6, 0.9] for i, label in enumerate(CHESTXRAY14_LABELS)},
}


def test_missing_explicit_folder_is_an_error_when_strict(monkeypatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="neither an existing folder nor a Hugging Face Hub repo id"):
        load_served_model("no/such/folder", environ={}, strict_explicit=True)


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
    served = load_served_model(environ={"CXR_MODEL_REPO": "org/cxr-test", "CXR_MODEL_REVISION": "v0.1.0"}, device="cpu")

    assert served.commit == COMMIT
    assert served.weights_sha256 == sha256_of(documented_weights / "model.safetensors")
    assert served.model_card == "# The model card\n\nFrontal views only."  # front matter stripped
    reference = Predictor.from_pretrained(documented_weights, device="cpu").predict(NIH_EXAMPLES[0])
    np.testing.assert_array_equal(served.predictor.predict(NIH_EXAMPLES[0]).probabilities, reference.probabilities)
    about = about_markdown(served)
    assert "Hub repo org/cxr-test at revision v0.1.0" in about and COMMIT[:12] in about


def test_about_shows_the_recorded_numbers(documented_weights: Path) -> None:
    served = load_served_model(str(documented_weights), device="cpu")
    about = about_markdown(served)
    assert served.commit is None and served.model_card.startswith("# The model card")
    assert f"local folder {documented_weights.name}" in about and str(documented_weights.parent) not in about
    assert served.weights_sha256 in about
    assert "mean AUROC **0.821** (95% CI 0.816–0.825) over all labels" in about
    assert "**0.805** over the 8 ChestX-ray8 labels" in about  # no interval recorded for it: none shown
    assert "(NIH ChestX-ray14, test split, 25596 images)" in about
    assert "- val mean auroc: 0.831" in about and "schedule" not in about
    # Threshold, test AUROC with its interval, and reliability of labels 13 and 1.
    assert "| Pleural thickening | 0.440 | 0.820 (0.600–0.900) | above chance |" in about
    assert "| Atelectasis | 0.200 | 0.700 (0.450–0.900) | at chance |" in about
    assert "**At chance on the test set (1 of 14):** Atelectasis — the 95% CI" in about
    assert trained_on(served.config) == (
        "Trained on NIH ChestX-ray14 — split: official train_val, patient-wise; 12 epochs."
    )


def test_about_without_metadata_says_what_is_unknown(tmp_path: Path) -> None:
    folder = save_model(make_model(TINY_CONFIG.replace(trained=True, metadata={})), tmp_path / "bare")
    served = load_served_model(str(folder), device="cpu")
    about = about_markdown(served)
    assert "The weights do not record what they were trained on." in about
    assert "None" not in about and "Evaluation" not in about
    assert about.count("| 0.500 |") == 14 and "AUROC" not in about
    assert "untrained" in trained_on(load_config(folder).replace(trained=False))


def test_api_records_carry_every_label_and_the_weights_identity(tiny_weights: Path) -> None:
    served = load_served_model(str(tiny_weights), device="cpu")
    prediction = served.predictor.predict(NIH_EXAMPLES[2])
    record = prediction_record(prediction, served)
    assert record["labels"] == list(CHESTXRAY14_LABELS)
    assert record["probabilities"] == prediction.probability_by_label
    assert list(record["thresholds"].values()) == pytest.approx(prediction.thresholds.tolist())
    assert record["positive"] == prediction.positive
    assert record["overlay_label"] == CHESTXRAY14_LABELS[int(np.argmax(prediction.probabilities))]
    assert record["model"] == {
        "kind": "folder",
        "source": tiny_weights.name,
        "revision": None,
        "commit": None,
        "weights_sha256": sha256_of(tiny_weights / "model.safetensors"),
        "trained": False,
        "warning": "Untrained weights: randomly initialised, never trained. Their probabilities and heatmaps mean "
        "nothing.",
        "why": "They were asked for explicitly.",
    }
    cam = cam_record(prediction, "Mass", served)
    i = CHESTXRAY14_LABELS.index("Mass")
    assert cam["probability"] == pytest.approx(float(prediction.probabilities[i]))
    assert cam["positive"] == ("Mass" in prediction.positive) and cam["caption"] == prediction.caption("Mass")
    with pytest.raises(KeyError, match="Unknown label"):
        cam_record(prediction, "Fracture", served)
    info = model_info(served)
    assert info["labels"] == list(CHESTXRAY14_LABELS) and info["trained"] is False and info["training"] is None


def test_banner_says_what_is_served_and_why(documented_weights: Path, tiny_weights: Path, monkeypatch) -> None:
    assert weights_banner(load_served_model(str(documented_weights), device="cpu")) is None
    text, alarming = weights_banner(load_served_model(str(tiny_weights), device="cpu"))
    assert alarming and text.startswith("**Untrained weights")
    synthetic = TINY_CONFIG.replace(
        trained=True, metadata={"training": {"dataset": "synthetic (python -m train synth)"}}
    )
    folder = save_model(make_model(synthetic), tiny_weights.parent / "synthetic")
    text, alarming = weights_banner(load_served_model(str(folder), device="cpu"))
    assert alarming and "trained on synthetic images" in text

    # Nothing asked for, no Hub, no starter: demonstration weights, and the banner gives every reason.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tiny_weights.parent / "empty-cache"))
    monkeypatch.setattr("cxr.sources.STARTER_DIR", tiny_weights.parent / "no-starter")
    served = load_served_model(environ={}, device="cpu")
    text, alarming = weights_banner(served)
    assert alarming and served.choice.kind == "demonstration" and served.summary()["kind"] == "demonstration"
    assert "not in the local Hugging Face cache" in text and "bundles no starter model" in text
    assert served.weights_sha256 == load_served_model(environ={}, device="cpu").weights_sha256  # seeded

    # A starter: a plain note with its evaluation, not a red warning.
    starter_config = TINY_CONFIG.replace(
        trained=True,
        metadata={
            "training": {
                "dataset": "NIH ChestX-ray14",
                "data_subset": {
                    "train_val": {"used": 632, "official": 86524},
                    "test": {"used": 106, "official": 25596},
                },
            },
            "evaluation": {"split": "test", "n_images": 106, "mean_auroc": 0.61, "mean_auroc_ci": [0.55, 0.66]},
        },
    )
    starter = save_model(make_model(starter_config), tiny_weights.parent / "starter")
    monkeypatch.setattr("cxr.sources.STARTER_DIR", starter)
    text, alarming = weights_banner(load_served_model(environ={}, device="cpu"))
    assert not alarming and text.startswith("**Starter model, weak by design.**")
    assert "632 of 86,524 train_val images (the official split restricted to the images at hand)" in text
    assert "test mean AUROC 0.610 (95% CI 0.550–0.660) on 106 images of the test split" in text


def test_display_names_are_readable_and_distinct() -> None:
    names = [display_name(label) for label in CHESTXRAY14_LABELS]
    assert display_name("Pleural_Thickening") == "Pleural thickening" and display_name("Effusion") == "Effusion"
    assert len(set(names)) == len(names) and not any("_" in name for name in names)


def test_the_page_card_names_local_plots_instead_of_showing_broken_images() -> None:
    card = (
        "---\nlicense: mit\n---\n# Card\n\n![ROC curves](evaluation/roc_curves.png)\n\n![logo](https://x.org/a.png)\n"
    )
    assert page_card(card) == ("# Card\n\n*(plot in the weights folder: ROC curves)*\n\n![logo](https://x.org/a.png)")
