"""``--available-only``: prepare, fit and evaluate on the part of the NIH release at hand (real images).

A folder with all of NIH's metadata but only 16 of its real radiographs (12 from train_val_list.txt,
4 from test_list.txt) runs the whole pipeline with the flag, and is refused without it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxr.provenance import describe_subset
from tests.train_helpers import IMAGE_SIZE, TINY_RUN
from train.__main__ import main as train_main
from train.data.nih import official_split

METADATA = ("Data_Entry_2017_v2020.csv.gz", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv")
OFFICIAL = {"train_val": 86524, "test": 25596}  # lines of NIH's train_val_list.txt and test_list.txt


@pytest.fixture(scope="module")
def partial_nih(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NIH metadata plus the first 12 train_val images and 4 test images of SOURCES.csv, as symlinks."""
    source = shared_data / "nih-cxr14"
    root = tmp_path_factory.mktemp("partial-nih")
    for name in METADATA:
        (root / name).symlink_to(source / name)
    with open(source / "images" / "SOURCES.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = [row for row in rows if row["split"] == "train_val"][:12]
    chosen += [row for row in rows if row["split"] == "test"][:4]
    (root / "images").mkdir()
    for row in chosen:
        (root / "images" / row["image"]).symlink_to(source / "images" / row["image"])
    return root


def images_in(root: Path) -> set[str]:
    return {path.name for path in (root / "images").glob("*.png")}


def test_official_split_restricted_to_available_images(partial_nih: Path) -> None:
    present = images_in(partial_nih)
    split = official_split(partial_nih, val_fraction=0.25, seed=0, available=present)
    used = {"train_val": len(split.train) + len(split.val), "test": len(split.test)}
    assert used == {"train_val": 12, "test": 4}
    assert split.subset == {name: {"used": used[name], "official": OFFICIAL[name]} for name in OFFICIAL}
    assert {r.image for r in split.train + split.val + split.test} == present
    train_patients, val_patients = {r.patient_id for r in split.train}, {r.patient_id for r in split.val}
    assert val_patients and not train_patients & val_patients  # validation is still carved by patient
    assert describe_subset(split.subset).startswith("12 of 86,524 train_val images and 4 of 25,596 test images")
    assert official_split(partial_nih).subset is None


def test_prepare_fit_evaluate_on_part_of_the_release(partial_nih: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    prepare = ["prepare", "--data-dir", str(partial_nih), "--image-size", str(IMAGE_SIZE), "--cache-dir", str(cache)]
    assert train_main([*prepare, "--workers", "1"]) == 1  # missing images stay an error without the flag
    assert "112,104 of 112,120 images listed in Data_Entry are not under" in capsys.readouterr().err
    assert not cache.exists()  # refused before anything was allocated
    assert train_main([*prepare, "--workers", "1", "--available-only"]) == 0
    assert set(json.loads((cache / "cache.json").read_text())["names"]) == images_in(partial_nih)

    fit = ["fit", "--data-dir", str(partial_nih), "--cache-dir", str(cache), *TINY_RUN, "--epochs", "1"]
    fit += ["--batch-size", "4"]
    assert train_main([*fit, "--out", str(tmp_path / "refused")]) == 1  # the full split is not in this cache
    assert "--available-only" in capsys.readouterr().err
    assert train_main([*fit, "--out", str(tmp_path / "run"), "--available-only"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["available_only"] is True
    weights = tmp_path / "run" / "weights"
    training = json.loads((weights / "config.json").read_text())["metadata"]["training"]
    assert training["data_subset"] == {
        "train_val": {"used": 12, "official": 86524},
        "test": {"used": 4, "official": 25596},
    }
    assert training["images"]["train"] + training["images"]["val"] == 12
    assert json.loads((weights / "split.json").read_text())["subset"] == training["data_subset"]

    evaluate = ["evaluate", "--weights", str(weights), "--data-dir", str(partial_nih), "--workers", "0"]
    assert train_main([*evaluate, "--bootstrap", "20"]) == 2  # 25,592 official test images are not at hand
    assert "images are neither under" in capsys.readouterr().err
    assert train_main([*evaluate, "--bootstrap", "20", "--available-only"]) == 0
    metrics = json.loads((weights / "evaluation" / "metrics.json").read_text())
    assert metrics["n_images"] == 4
