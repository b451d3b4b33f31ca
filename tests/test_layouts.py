"""``prepare`` reads every layout people have: NIH's archives in place, NIH's ``images/``, Kaggle's, flat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.nih_fixtures import LAYOUTS, small_nih
from train.data import prepare as prepare_module
from train.data.archives import archive_names, find_archived_images
from train.data.nih import DataError, find_images
from train.data.prepare import prepare, prepare_image

SIZE = 64


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[Path]:
    """Six real NIH images (the shared 512 px copies)."""
    folder = shared_data / "nih-cxr14" / "images"
    return [folder / f"{name}.png" for name in ("00000001_000", "00000002_000", "00000013_003", "00000013_004")] + [
        folder / name for name in sorted(p.name for p in folder.glob("*.png"))[-2:]
    ]


def expected(images: list[Path]) -> dict[str, np.ndarray]:
    return {path.name: prepare_image(path, SIZE) for path in images}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_prepares_every_image(layout: str, images: list[Path], shared_data: Path, tmp_path: Path) -> None:
    data = small_nih(tmp_path / layout, shared_data, images, layout)
    cache, problems = prepare(data, SIZE, workers=1, progress=False)
    assert problems == []
    reference = expected(images)
    assert sorted(cache.names) == sorted(reference)
    for name, square in reference.items():
        np.testing.assert_array_equal(cache.read(cache.row(name)), square)


def test_archives_stream_through_the_processes_in_bounded_batches(
    images: list[Path], shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare_module, "IN_FLIGHT", 1)  # two images in flight at a time with two processes
    data = small_nih(tmp_path / "nih", shared_data, images, "archives")
    cache, problems = prepare(data, SIZE, workers=2, progress=False)
    assert problems == []
    for name, square in expected(images).items():
        np.testing.assert_array_equal(cache.read(cache.row(name)), square)


def test_extracted_copies_win_over_archives_and_a_rerun_only_finishes(
    images: list[Path], shared_data: Path, tmp_path: Path
) -> None:
    data = small_nih(tmp_path / "nih", shared_data, images, "archives")
    (data / "images").mkdir()
    shutil.copyfile(images[0], data / "images" / images[0].name)  # also inside images_01.tar.gz
    assert set(find_images(data)) == {images[0].name}
    cache, problems = prepare(data, SIZE, workers=1, progress=False)
    assert problems == [] and len(cache) == len(images)
    cache.done[cache.row(images[5].name)] = 0  # as if interrupted before the last image
    cache.flush()
    again, problems = prepare(data, SIZE, workers=1, progress=False)
    assert problems == [] and not again.not_ready(again.names)
    np.testing.assert_array_equal(again.read(again.row(images[5].name)), prepare_image(images[5], SIZE))


def test_archive_listing_is_kept_and_renewed_when_the_archive_changes(
    images: list[Path], shared_data: Path, tmp_path: Path
) -> None:
    data = small_nih(tmp_path / "nih", shared_data, images, "archives")
    archive = data / "images_01.tar.gz"
    assert archive_names(archive) == [images[0].name, images[1].name]
    listing = json.loads((data / ".images_01.tar.gz.names").read_text())
    assert listing["names"] == [images[0].name, images[1].name]
    shutil.copyfile(data / "images_02.tar.gz", archive)  # another file under the same name
    assert archive_names(archive) == [images[2].name, images[3].name]
    with pytest.raises(DataError, match=rf"{images[2].name} is in both .*images_01.tar.gz and .*images_02.tar.gz"):
        find_archived_images(data)  # the same image in two archives: which one holds the right bytes is unclear


def test_a_damaged_archive_is_named(images: list[Path], shared_data: Path, tmp_path: Path) -> None:
    data = small_nih(tmp_path / "nih", shared_data, images, "archives")
    archive = data / "images_02.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-2000])  # cut short, as by an interrupted copy
    with pytest.raises(DataError, match=r"images_02\.tar\.gz is damaged .*download it again"):
        prepare(data, SIZE, workers=1, progress=False)
