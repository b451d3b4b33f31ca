"""train.data.nih on NIH's real metadata (../shared/data) and on small files written here."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import CHESTXRAY8_LABELS, CHESTXRAY14_LABELS
from train.data.nih import (
    DataError,
    Record,
    Split,
    find_data_entry,
    find_images,
    label_matrix,
    official_split,
    read_bbox_list,
    read_data_entry,
    read_split,
    read_split_list,
    records_by_name,
    write_split,
)

# NIH's published totals (Wang et al. 2017 / the release's README): images per finding over all 112,120.
NIH_LABEL_COUNTS = {
    "Atelectasis": 11559, "Cardiomegaly": 2776, "Effusion": 13317, "Infiltration": 19894, "Mass": 5782,
    "Nodule": 6331, "Pneumonia": 1431, "Pneumothorax": 5302, "Consolidation": 4667, "Edema": 2303,
    "Emphysema": 2516, "Fibrosis": 1686, "Pleural_Thickening": 3385, "Hernia": 227,
}  # fmt: skip
NIH_NO_FINDING = 60361


@pytest.fixture(scope="module")
def nih(shared_data: Path) -> Path:
    return shared_data / "nih-cxr14"


@pytest.fixture(scope="module")
def split(nih: Path) -> Split:
    return official_split(nih, val_fraction=0.1, seed=0)


def patients(records: list[Record]) -> set[int]:
    return {r.patient_id for r in records}


def test_official_split_sizes_and_patients(split: Split) -> None:
    assert len(split.train) + len(split.val) == 86_524
    assert len(split.test) == 25_596
    assert len(patients(split.train) | patients(split.val)) == 28_008
    assert len(patients(split.test)) == 2_797
    assert not patients(split.train) & patients(split.val)
    assert not patients(split.train) & patients(split.test)
    assert not patients(split.val) & patients(split.test)
    assert len(patients(split.val)) == round(0.1 * 28_008)


def test_official_split_follows_the_list_files(nih: Path, split: Split) -> None:
    test_names = read_split_list(nih / "test_list.txt")
    assert [r.image for r in split.test] == test_names
    train_val = set(read_split_list(nih / "train_val_list.txt"))
    assert {r.image for r in split.train + split.val} == train_val


def test_label_counts_match_data_entry_and_nih(nih: Path, split: Split) -> None:
    everything = split.train + split.val + split.test
    counts = label_matrix(everything, CHESTXRAY14_LABELS).sum(axis=0)
    with open(nih / "Data_Entry_2017_v2020.csv", newline="") as f:
        raw = Counter(label for row in csv.DictReader(f) for label in row["Finding Labels"].split("|"))
    assert dict(zip(CHESTXRAY14_LABELS, counts.astype(int).tolist(), strict=True)) == NIH_LABEL_COUNTS
    assert {label: raw[label] for label in CHESTXRAY14_LABELS} == NIH_LABEL_COUNTS
    assert sum(1 for r in everything if not r.labels) == raw["No Finding"] == NIH_NO_FINDING


def test_validation_patients_depend_on_seed_only(nih: Path, split: Split) -> None:
    again = official_split(nih, val_fraction=0.1, seed=0)
    other = official_split(nih, val_fraction=0.1, seed=1)
    assert [r.image for r in again.val] == [r.image for r in split.val]
    assert patients(other.val) != patients(split.val)
    assert [r.image for r in other.test] == [r.image for r in split.test]


def test_gzip_and_plain_data_entry_agree(nih: Path) -> None:
    plain = read_data_entry(nih / "Data_Entry_2017_v2020.csv")
    packed = read_data_entry(nih / "Data_Entry_2017_v2020.csv.gz")
    assert plain == packed
    assert len(plain) == 112_120
    assert plain[0] == Record("00000001_000.png", 1, ("Cardiomegaly",), 57, "M", "PA")


def test_split_file_round_trip(tmp_path: Path, nih: Path, split: Split) -> None:
    path = write_split(split, tmp_path / "split.json", val_fraction=0.1, seed=0)
    by_name = records_by_name(read_data_entry(find_data_entry(nih)))
    assert read_split(path, by_name) == split


def test_read_split_refuses_unknown_names(tmp_path: Path) -> None:
    record = Record("00000001_000.png", 1, (), 50, "F", "PA")
    path = write_split(Split([record], [], []), tmp_path / "split.json")
    with pytest.raises(DataError, match="not in Data_Entry"):
        read_split(path, {})


def test_bbox_list_real_file(nih: Path) -> None:
    boxes = read_bbox_list(nih / "BBox_List_2017.csv")
    assert len(boxes) == 984
    assert len({b.image for b in boxes}) == 880
    assert {b.image for b in boxes} <= set(read_split_list(nih / "test_list.txt"))
    counts = Counter(b.label for b in boxes)
    assert counts == {
        "Atelectasis": 180, "Effusion": 153, "Cardiomegaly": 146, "Infiltration": 123,
        "Pneumonia": 120, "Pneumothorax": 98, "Mass": 85, "Nodule": 79,
    }  # fmt: skip
    first = boxes[0]
    assert (first.image, first.label) == ("00013118_008.png", "Atelectasis")
    assert first.x == pytest.approx(225.084745762712) and first.h == pytest.approx(79.1864406779661)
    assert read_bbox_list(nih / "BBox_List_2017.csv.gz") == boxes


# -- the two published Data_Entry variants, written here ------------------------------------------

ROWS = [
    ["00000001_000.png", "Cardiomegaly", "0", "1", "57", "M", "PA", "2682", "2749", "0.143", "0.143"],
    ["00000001_001.png", "Cardiomegaly|Emphysema", "1", "1", "058", "M", "AP", "2894", "2729", "0.143", "0.143"],
    ["00000002_000.png", "No Finding", "0", "2", "80Y", "F", "PA", "2500", "2048", "0.171", "0.171"],
]
HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,{sex},View Position,"
HEADER += "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"


def write_variant(path: Path, sex_column: str, trailing_comma: bool) -> Path:
    end = ",\n" if trailing_comma else "\n"
    lines = [HEADER.format(sex=sex_column)] + [",".join(row) for row in ROWS]
    path.write_text(end.join(lines) + end, encoding="utf-8")
    return path


EXPECTED = [
    Record("00000001_000.png", 1, ("Cardiomegaly",), 57, "M", "PA"),
    Record("00000001_001.png", 1, ("Cardiomegaly", "Emphysema"), 58, "M", "AP"),
    Record("00000002_000.png", 2, (), 80, "F", "PA"),
]


@pytest.mark.parametrize(("sex_column", "trailing_comma"), [("Patient Gender", False), ("Patient Sex", True)])
def test_both_data_entry_variants(tmp_path: Path, sex_column: str, trailing_comma: bool) -> None:
    path = write_variant(tmp_path / "Data_Entry_2017.csv", sex_column, trailing_comma)
    assert read_data_entry(path) == EXPECTED


def test_find_data_entry_prefers_v2020_and_reads_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No Data_Entry"):
        find_data_entry(tmp_path)
    old = write_variant(tmp_path / "Data_Entry_2017.csv", "Patient Sex", True)
    assert find_data_entry(tmp_path) == old
    packed = tmp_path / "Data_Entry_2017_v2020.csv.gz"
    packed.write_bytes(gzip.compress(old.read_bytes()))
    assert find_data_entry(tmp_path) == packed
    assert read_data_entry(packed) == EXPECTED


def test_malformed_data_entry_names_the_line(tmp_path: Path) -> None:
    path = write_variant(tmp_path / "Data_Entry_2017.csv", "Patient Gender", False)
    path.write_text(path.read_text().replace("Emphysema", "Emphysem"), encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3: unknown finding"):
        read_data_entry(path)
    (tmp_path / "bad.csv").write_text("Image Index,Labels\n", encoding="utf-8")
    with pytest.raises(DataError, match="lacks the column"):
        read_data_entry(tmp_path / "bad.csv")


def test_split_list_without_final_newline(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("00000001_000.png\n00000001_001.png", encoding="utf-8")
    assert read_split_list(tmp_path / "list.txt") == ["00000001_000.png", "00000001_001.png"]


def test_label_matrix_follows_the_given_order() -> None:
    matrix = label_matrix(EXPECTED, CHESTXRAY8_LABELS)
    assert matrix.dtype == np.float32 and matrix.shape == (3, 8)
    expected = np.zeros((3, 8), dtype=np.float32)
    expected[0, 1] = expected[1, 1] = 1.0  # Cardiomegaly; Emphysema is not among the 8
    np.testing.assert_array_equal(matrix, expected)
    reversed_labels = CHESTXRAY14_LABELS[::-1]
    np.testing.assert_array_equal(
        label_matrix(EXPECTED, reversed_labels), label_matrix(EXPECTED, CHESTXRAY14_LABELS)[:, ::-1]
    )


def test_find_images_nested_and_flat(tmp_path: Path) -> None:
    nested = tmp_path / "nested"
    for folder, name in [("images_001", "00000001_000.png"), ("images_002", "00000002_000.png")]:
        (nested / folder / "images").mkdir(parents=True)
        (nested / folder / "images" / name).write_bytes(b"png")
    (nested / "curves.png").write_bytes(b"not an NIH image")
    assert find_images(nested) == {
        "00000001_000.png": nested / "images_001" / "images" / "00000001_000.png",
        "00000002_000.png": nested / "images_002" / "images" / "00000002_000.png",
    }
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "00000001_000.png").write_bytes(b"png")
    assert find_images(flat) == {"00000001_000.png": flat / "00000001_000.png"}
    (nested / "00000001_000.png").write_bytes(b"png")
    with pytest.raises(DataError, match="occur twice"):
        find_images(nested)
