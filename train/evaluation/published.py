"""Published ChestX-ray14 AUROCs to compare against, with where they come from and on which split.

Only results on NIH's official test split are directly comparable with ours. CheXNet is listed
because readers ask for it, marked as evaluated on a different (random, patient-wise) split.
Per-label values are those tabulated in Rajpurkar et al. (2017), Table 2; their 14-label means
reproduce the headline numbers (0.745 and 0.841), a check that the transcription is right.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedResult:
    """One paper's per-label test AUROC on ChestX-ray14."""

    name: str
    model: str
    citation: str
    split: str
    official_split: bool
    mean_auroc: float  # as reported, over the 14 labels
    per_label: dict[str, float]


WANG_2017 = PublishedResult(
    name="Wang et al. 2017",
    model="ResNet-50 + LSE pooling (the CXRNet design)",
    citation=(
        "X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers. ChestX-ray8: Hospital-scale Chest X-ray "
        "Database and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax "
        "Diseases. IEEE CVPR 2017, pp. 3462-3471."
    ),
    split="official NIH test split",
    official_split=True,
    mean_auroc=0.745,
    per_label={
        "Atelectasis": 0.7003,
        "Cardiomegaly": 0.8100,
        "Effusion": 0.7585,
        "Infiltration": 0.6614,
        "Mass": 0.6933,
        "Nodule": 0.6687,
        "Pneumonia": 0.6580,
        "Pneumothorax": 0.7993,
        "Consolidation": 0.7032,
        "Edema": 0.8052,
        "Emphysema": 0.8330,
        "Fibrosis": 0.7859,
        "Pleural_Thickening": 0.6835,
        "Hernia": 0.8717,
    },
)

CHEXNET_2017 = PublishedResult(
    name="CheXNet (Rajpurkar et al. 2017)",
    model="DenseNet-121",
    citation=(
        "P. Rajpurkar, J. Irvin, K. Zhu, et al. CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays "
        "with Deep Learning. arXiv:1711.05225, 2017."
    ),
    split="a random patient-wise 70/10/20 split, NOT the official test split: not directly comparable",
    official_split=False,
    mean_auroc=0.841,
    per_label={
        "Atelectasis": 0.8094,
        "Cardiomegaly": 0.9248,
        "Effusion": 0.8638,
        "Infiltration": 0.7345,
        "Mass": 0.8676,
        "Nodule": 0.7802,
        "Pneumonia": 0.7680,
        "Pneumothorax": 0.8887,
        "Consolidation": 0.7901,
        "Edema": 0.8878,
        "Emphysema": 0.9371,
        "Fibrosis": 0.8047,
        "Pleural_Thickening": 0.8062,
        "Hernia": 0.9164,
    },
)

PUBLISHED: tuple[PublishedResult, ...] = (WANG_2017, CHEXNET_2017)
