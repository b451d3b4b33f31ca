"""Split checks before evaluation: patient-disjoint parts, train/val from train_val_list, test = test_list."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from train.data.nih import DataError, official_split, write_split
from train.data.synth import SynthConfig, generate
from train.evaluation.splits import check_split, load_split


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), SynthConfig(patients=30, size=64, seed=4), progress=False)


def test_the_split_fit_writes_passes_and_is_read_back(data: Path, tmp_path: Path) -> None:
    split = official_split(data, 0.25, seed=3)
    write_split(split, tmp_path / "split.json", seed=3, val_fraction=0.25)
    loaded, source = load_split(data, tmp_path, None, needs_val=True, recarve=None)
    assert loaded == split and source == "split.json of the weights"


def test_a_patient_in_two_parts_is_refused(data: Path) -> None:
    split = official_split(data, 0.25, seed=3)
    leaked = dataclasses.replace(split, val=[*split.val, split.train[0]])
    with pytest.raises(DataError, match=r"1 patient\(s\) are in both train and val"):
        check_split(leaked, data, "split.json")


def test_test_images_must_be_the_official_test_list_or_a_declared_subset(data: Path) -> None:
    split = official_split(data, 0.25, seed=3)
    n_test = len(split.test)
    short = dataclasses.replace(split, test=split.test[:-2])
    with pytest.raises(DataError, match=f"its test part has {n_test - 2:,} of the {n_test:,} images of test_list.txt"):
        check_split(short, data, "split.json")
    declared = dataclasses.replace(short, subset={"test": {"used": n_test - 2, "official": n_test}})
    check_split(declared, data, "split.json")  # a subset that says so is accepted
    wrong = dataclasses.replace(short, subset={"test": {"used": n_test, "official": n_test}})
    with pytest.raises(DataError, match=f"declares {n_test} of {n_test} test images but holds {n_test - 2}"):
        check_split(wrong, data, "split.json")
    patient = split.train[0].patient_id  # all of one training patient's images moved to test
    moved = [r for r in split.train if r.patient_id == patient]
    swapped = dataclasses.replace(
        split, train=[r for r in split.train if r.patient_id != patient], test=[*split.test, *moved]
    )
    with pytest.raises(DataError, match=f"{len(moved)} test image\\(s\\) are not in test_list.txt"):
        check_split(swapped, data, "split.json")


def test_train_images_must_come_from_train_val_list(data: Path) -> None:
    split = official_split(data, 0.25, seed=3)
    patient = split.test[0].patient_id  # all of one test patient's images moved to train
    moved = [r for r in split.test if r.patient_id == patient]
    leaked = dataclasses.replace(
        split, train=[*split.train, *moved], test=[r for r in split.test if r.patient_id != patient]
    )
    with pytest.raises(DataError, match=f"{len(moved)} train/val image\\(s\\) are not in train_val_list.txt"):
        check_split(leaked, data, "split.json")


def test_without_a_split_file_validation_is_re_carved_only_on_request(data: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="re-carving it with a guessed seed"):
        load_split(data, tmp_path, None, needs_val=True, recarve=None)
    split, source = load_split(data, tmp_path, None, needs_val=True, recarve=(3, 0.25))
    assert split == official_split(data, 0.25, seed=3) and "seed 3" in source
    split, source = load_split(data, tmp_path, None, needs_val=False, recarve=None)
    assert split.test == official_split(data).test and "validation not used" in source
