"""Label reliability from a config's test CIs; an at-chance label is never positive."""

from __future__ import annotations

import numpy as np

from cxr.config import ModelConfig
from cxr.input_check import InputCheck
from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Prediction
from cxr.reliability import label_reliability

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
