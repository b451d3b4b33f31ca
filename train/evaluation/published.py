"""Published ChestX-ray14 AUROCs to compare against: each row cited to its source and table, with its split.

Which split a paper used decides whether its numbers are comparable with ours (the official,
patient-wise ``test_list.txt``). ``official_split`` is True only where the source itself says so,
False where it describes another split, and None where that could not be checked here.

How the values were checked (no PDF was at hand when this table was revised):

- CheXNet's own column was compared with the transcriptions of Rajpurkar et al. (2017), Table 2, in
  the READMEs of two reimplementations (github.com/arnoweng/CheXNet, github.com/jm12138/Paddle-CheXNet):
  equal to 4 decimals, mean 0.841.
- The Wang et al. 14-label values (mean 0.745) are those of the later arXiv revision of the ChestX-ray8
  paper (arXiv:1705.02315, ResNet-50 on ChestX-ray14). Their table number could not be checked.
  They are *not* the "Wang et al." column of CheXNet's Table 2: that column, in the same two READMEs,
  reads 0.716 … 0.767 with mean 0.738, apparently from another revision of arXiv:1705.02315.
- The CVPR 2017 values (8 labels, mean 0.696) come from the CVPR paper's multi-label classification
  table, ResNet-50 with the weighted loss; only their mean (0.696) was checked, not the table itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedResult:
    """One paper's per-label test AUROC on ChestX-ray8 / ChestX-ray14."""

    name: str
    model: str
    citation: str
    source: str  # the exact place the numbers come from (paper version and table)
    split: str  # the split the source describes
    official_split: bool | None  # the official test_list.txt? None: not checked here
    mean_auroc: float  # as reported, over the labels in per_label
    per_label: dict[str, float]
    checked: str  # how the transcription was verified

    @property
    def n_labels(self) -> int:
        return len(self.per_label)


WANG_CITATION = (
    "X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers. ChestX-ray8: Hospital-scale Chest X-ray "
    "Database and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases."
)

WANG_ARXIV = PublishedResult(
    name="Wang et al. 2017 (arXiv, 14 labels)",
    model="ResNet-50 + LSE pooling, weighted cross-entropy (the CXRNet design)",
    citation=WANG_CITATION + " arXiv:1705.02315 (later revision, ChestX-ray14).",
    source="arXiv:1705.02315, later revision: ResNet-50 AUROC on the 14 ChestX-ray14 labels (table number not checked)",
    split="the revision's ChestX-ray14 split (whether the official test_list.txt was not checked here)",
    official_split=None,
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
    checked="mean of the 14 values = the reported 0.745; the values themselves could not be checked here",
)

WANG_CVPR = PublishedResult(
    name="Wang et al. 2017 (CVPR, 8 labels)",
    model="ResNet-50 + LSE pooling, weighted cross-entropy",
    citation=WANG_CITATION + " IEEE CVPR 2017, pp. 3462-3471.",
    source="CVPR 2017 paper: multi-label classification AUCs, ResNet-50 with the weighted loss (8 ChestX-ray8 labels)",
    split="a random image-level 70/10/20 split of ChestX-ray8: NOT the official patient-wise lists",
    official_split=False,
    mean_auroc=0.696,
    per_label={
        "Atelectasis": 0.7069,
        "Cardiomegaly": 0.8141,
        "Effusion": 0.7362,
        "Infiltration": 0.6128,
        "Mass": 0.5609,
        "Nodule": 0.7164,
        "Pneumonia": 0.6333,
        "Pneumothorax": 0.7891,
    },
    checked="mean of the 8 values = the reported 0.696; the values themselves could not be checked here",
)

CHEXNET_2017 = PublishedResult(
    name="CheXNet (Rajpurkar et al. 2017)",
    model="DenseNet-121",
    citation=(
        "P. Rajpurkar, J. Irvin, K. Zhu, et al. CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays "
        "with Deep Learning. arXiv:1711.05225, 2017."
    ),
    source="arXiv:1711.05225, Table 2, column CheXNet",
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
    checked="equal to the transcriptions of Table 2 in two reimplementations' READMEs; mean 0.841",
)

# The first row is the reference mark of the AUROC plot: the design these weights follow, on 14 labels.
PUBLISHED: tuple[PublishedResult, ...] = (WANG_ARXIV, WANG_CVPR, CHEXNET_2017)
