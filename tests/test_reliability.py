"""Label reliability from a config's test CIs; an at-chance label is never positive; the first heatmap shown."""

from __future__ import annotations

import json

import numpy as np

from cxr.config import ModelConfig
from cxr.input_check import InputCheck
from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Prediction
from cxr.reliability import label_evidence, label_reliability, reliability_sentence
from cxr.serving import first_heatmap
from cxr.sources import STARTER_DIR
from cxr.weights import load_config

LABELS = CHESTXRAY14_LABELS[:4]


def _config(evaluation: dict) -> ModelConfig:
    return ModelConfig(labels=LABELS, metadata={"evaluation": evaluation})


def test_reliability_follows_the_confidence_interval() -> None:
    config = _config(
        {
            "split": "test",
            "per_label_auroc": {"Atelectasis": 0.66, "Cardiomegaly": 0.53, "Effusion": 0.48},
            "per_label_auroc_ci": {"Atelectasis": [0.503, 0.83], "Cardiomegaly": [0.40, 0.67], "Effusion": [0.51, 0.7]},
        }
    )
    assert label_reliability(config) == {
        "Atelectasis": "above chance",
        "Cardiomegaly": "at chance",
        "Effusion": "at chance",  # AUROC <= 0.5 whatever the interval says
        "Infiltration": "not evaluated",
    }


def test_no_test_evaluation_means_not_evaluated() -> None:
    validation = _config({"split": "validation", "per_label_auroc_ci": {label: [0.6, 0.7] for label in LABELS}})
    assert set(label_reliability(validation).values()) == {"not evaluated"}
    assert set(label_reliability(ModelConfig(labels=LABELS)).values()) == {"not evaluated"}


def test_at_chance_and_refused_images_have_no_positive_findings() -> None:
    probabilities = np.array([0.9, 0.8, 0.1, 0.7], dtype=np.float32)
    reliability = {"Atelectasis": "above chance", "Cardiomegaly": "at chance", "Effusion": "above chance"}
    common = dict(thresholds=np.full(4, 0.5, np.float32), maps=np.zeros((4, 2, 2)), image=np.zeros((4, 4)))
    prediction = Prediction(LABELS, probabilities, reliability=reliability, **common)
    assert prediction.positive == ["Atelectasis", "Infiltration"]
    assert prediction.at_chance == ["Cardiomegaly"]
    assert prediction.to_dict()["label_reliability"]["Infiltration"] == "not evaluated"
    refused = InputCheck(accepted=False, kind="not_medical_image", score=0.01, message="Not a radiograph.")
    assert Prediction(LABELS, probabilities, input_check=refused, **common).positive == []


def test_the_starter_has_seven_labels_at_chance_from_its_own_test_intervals() -> None:
    config = load_config(STARTER_DIR)
    metrics = json.loads((STARTER_DIR / "metrics.json").read_text(encoding="utf-8"))
    recorded = config.metadata["evaluation"]["per_label_auroc_ci"]
    assert recorded == {label: m["auroc_ci"] for label, m in metrics["per_label"].items()}  # exactly evaluate's
    at_chance = [label for label, verdict in label_reliability(config).items() if verdict == "at chance"]
    assert sorted(at_chance) == [
        "Consolidation", "Emphysema", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia",
    ]  # fmt: skip
    assert label_reliability(config)["Atelectasis"] == "above chance"  # 95% CI 0.503–0.832: just above
    nodule = label_evidence(config)["Nodule"]
    assert nodule.describe() == "at chance on the test set: AUROC 0.45, 95% CI 0.22–0.70"


def test_one_sentence_names_the_labels_at_chance_or_says_none_is() -> None:
    sentence = reliability_sentence({"Nodule": "at chance", "Pleural_Thickening": "at chance", "Edema": "above chance"})
    assert sentence.startswith("**At chance on the test set (2 of 3):** Nodule, Pleural thickening — ")
    assert "never called positive or marked ▲" in sentence
    assert "all are above chance" in reliability_sentence({"Nodule": "above chance", "Edema": "above chance"})
    assert reliability_sentence({"Nodule": "not evaluated"}).startswith("These weights record no per-finding test")


def _graded(probabilities, reliability, empty=()) -> Prediction:
    k = len(probabilities)
    return Prediction(
        LABELS[:k],
        np.asarray(probabilities, np.float32),
        np.full(k, 0.5, np.float32),
        np.zeros((k, 2, 2)),
        np.zeros((4, 4)),
        reliability=reliability,
        empty_maps=tuple(empty),
    )


def test_the_first_heatmap_is_the_most_probable_label_above_chance_with_a_map() -> None:
    above = dict.fromkeys(LABELS, "above chance")
    # Most probable first: Effusion (empty map), Atelectasis (at chance), then Infiltration.
    prediction = _graded([0.8, 0.2, 0.9, 0.6], {**above, "Atelectasis": "at chance"}, empty=["Effusion"])
    assert first_heatmap(prediction) == ("Infiltration", None)
    assert first_heatmap(_graded([0.1, 0.3, 0.2, 0.4], {})) == ("Infiltration", None)  # not evaluated counts
    # No label qualifies: the most probable is shown, and the reason is given.
    label, why = first_heatmap(_graded([0.8, 0.2, 0.9, 0.6], {**above, "Atelectasis": "at chance"}, LABELS[1:]))
    assert (label, why) == ("Effusion", "every finding the model can tell from chance has an empty Grad-CAM map "
                            "on this image")  # fmt: skip
    label, why = first_heatmap(_graded([0.8, 0.2, 0.9, 0.6], dict.fromkeys(LABELS, "at chance")))
    assert (label, why) == ("Effusion", "every finding is at chance on the test set of these weights")


def test_captions_say_at_chance_and_empty_instead_of_a_verdict() -> None:
    prediction = _graded([0.8, 0.7, 0.1, 0.6], {"Atelectasis": "at chance"}, empty=["Effusion"])
    assert prediction.caption("Atelectasis") == (
        "Atelectasis: 80.0% (threshold 50.0%; at chance on the test set, so never called positive)"
    )
    assert "positive" not in prediction.caption("Atelectasis").replace("never called positive", "")
    assert prediction.caption("Cardiomegaly") == "Cardiomegaly: 70.0% (threshold 50.0%, positive)"
    assert prediction.caption("Effusion") == (
        "Effusion: 10.0% (threshold 50.0%, below threshold). Grad-CAM finds no region that raises this finding's score."
    )
