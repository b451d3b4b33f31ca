"""``python -m train synth`` and ``prepare``: the synthetic NIH layout, and the uint8 cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.io import load_image
from cxr.labels import CHESTXRAY14_LABELS
from cxr.preprocess import fit_to_square, normalize
from tests.conftest import TINY_CONFIG
from train import __main__ as train_cli
from train.data.cache import CacheError, ImageCache
from train.data.dataset import CachedDataset, to_model_input
from train.data.nih import (
    find_data_entry,
    find_images,
    label_matrix,
    official_split,
    read_bbox_list,
    read_data_entry,
    read_split_list,
)
from train.data.prepare import prepare
from train.data.synth import PATTERNS, SynthConfig, background, draw_findings, generate, pattern

SMALL = SynthConfig(patients=12, size=96, seed=3)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), SMALL, progress=False)


def test_synth_writes_the_nih_layout(synth_dir: Path) -> None:
    records = read_data_entry(find_data_entry(synth_dir))
    images = find_images(synth_dir)
    assert set(images) == {r.image for r in records}
    assert all(path.parent.parent.name == "images_001" for path in images.values())  # NIH's nested folders
    assert load_image(next(iter(images.values()))).shape == (SMALL.size, SMALL.size)
    split = official_split(synth_dir, val_fraction=0.25, seed=0)
    assert len(split.train) + len(split.val) + len(split.test) == len(records)
    train_val_patients = {r.patient_id for r in split.train + split.val}
    assert not train_val_patients & {r.patient_id for r in split.test}
    assert len({r.patient_id for r in records}) == SMALL.patients


def test_synth_boxes_are_the_findings_of_test_images(synth_dir: Path) -> None:
    boxes = read_bbox_list(synth_dir / "BBox_List_2017.csv")
    test = set(read_split_list(synth_dir / "test_list.txt"))
    by_name = {r.image: r for r in read_data_entry(find_data_entry(synth_dir))}
    assert {b.image for b in boxes} <= test
    for name in test:
        assert sorted(b.label for b in boxes if b.image == name) == sorted(by_name[name].labels)
    assert all(0 <= b.x and b.x + b.w <= SMALL.size and 0 <= b.y and b.y + b.h <= SMALL.size for b in boxes)


def test_synth_is_deterministic(synth_dir: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", SMALL, progress=False)
    for name in ("Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt"):
        assert (again / name).read_bytes() == (synth_dir / name).read_bytes()
    first = sorted(find_images(synth_dir).items())[0]
    assert (again / first[1].relative_to(synth_dir)).read_bytes() == first[1].read_bytes()


def test_flat_layout(tmp_path: Path) -> None:
    out = generate(tmp_path, SynthConfig(patients=3, size=64, layout="flat"), progress=False)
    assert all(path.parent == out for path in find_images(out).values())


@pytest.mark.parametrize("label", CHESTXRAY14_LABELS)
def test_each_pattern_is_drawn_inside_its_box_only(label: str) -> None:
    rng = np.random.default_rng(7)
    image = background(rng, 128)
    before = image.copy()
    [(drawn, x, y, w, h)] = draw_findings(image, (label,), rng)
    changed = image != before
    assert drawn == label and changed.any()
    inside = np.zeros_like(changed)
    inside[int(y) : int(y + h), int(x) : int(x + w)] = True
    assert not (changed & ~inside).any()
    sign = PATTERNS[label][1]
    assert sign * (image[inside].mean() - before[inside].mean()) > 0.03  # a visible opacity (+) or lucency (-)


def test_patterns_differ_from_each_other() -> None:
    assert list(PATTERNS) == list(CHESTXRAY14_LABELS)
    masks = np.stack([pattern(label, 32).ravel() for label in CHESTXRAY14_LABELS])
    assert set(np.unique(masks)) == {-1.0, 0.0, 1.0}
    distance = np.abs(masks[:, None] - masks[None]).mean(axis=2)
    assert distance[~np.eye(len(masks), dtype=bool)].min() > 0.1


# -- prepare -------------------------------------------------------------------------------------


@pytest.fixture
def real_nih_dir(shared_data: Path, tmp_path: Path) -> Path:
    """Six real 1024 px NIH PNGs, flat, with their Data_Entry rows."""
    samples = sorted((shared_data / "samples" / "nih").glob("0000000[1-5]_00[0-1].png"))[:6]
    lines = (shared_data / "nih-cxr14" / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    wanted = {p.name for p in samples}
    rows = [line for line in lines[1:] if line.split(",", 1)[0] in wanted]
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    for path in samples:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_cache_matches_fit_to_square_on_real_nih_images(real_nih_dir: Path) -> None:
    cache, problems = prepare(real_nih_dir, image_size=256, workers=2, progress=False)
    assert problems == []
    assert cache.folder == real_nih_dir / "cache-256" and len(cache) == 6
    for name, path in find_images(real_nih_dir).items():
        expected = fit_to_square(load_image(path), 256)
        stored = cache.read(cache.row(name)).astype(np.float32) / 255.0
        assert np.abs(stored - expected).max() <= 1 / 255


def test_dataset_input_equals_cxr_preprocessing(synth_dir: Path, tmp_path: Path) -> None:
    cache, _ = prepare(synth_dir, image_size=64, cache_dir=tmp_path / "cache", workers=1, progress=False)
    records = read_data_entry(find_data_entry(synth_dir))[:5]
    dataset = CachedDataset(cache, records, CHESTXRAY14_LABELS)
    images, targets, index = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    assert index == (0, 1, 2, 3, 4)
    np.testing.assert_array_equal(torch.stack(targets).numpy(), label_matrix(records, CHESTXRAY14_LABELS))
    config = TINY_CONFIG.replace(image_size=64)
    x = to_model_input(torch.stack(images), config)
    paths = find_images(synth_dir)
    reference = normalize(
        torch.from_numpy(np.stack([fit_to_square(load_image(paths[r.image]), 64) for r in records])), config
    )
    assert x.shape == (5, 3, 64, 64)
    torch.testing.assert_close(x, reference, atol=0.51 / 255 / min(config.std), rtol=0)


def test_prepare_resumes_without_redoing_finished_rows(synth_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    images = find_images(data)
    held_back = sorted(images)[-3:]
    cache, problems = prepare(data, image_size=64, workers=1, progress=False)
    assert problems == []
    for name in held_back:  # as if prepare had been interrupted before these
        cache.done[cache.row(name)] = 0
        cache.images[cache.row(name)] = 0
    first = cache.row(sorted(images)[0])
    sentinel = np.full((64, 64), 7, dtype=np.uint8)
    cache.write(first, sentinel)  # a finished row: a resumed prepare must leave it alone
    cache.flush()
    assert cache.not_ready(cache.names) == held_back
    cache, problems = prepare(data, image_size=64, workers=2, progress=False)
    assert problems == [] and cache.not_ready(cache.names) == []
    np.testing.assert_array_equal(cache.read(first), sentinel)
    for name in held_back:
        expected = np.rint(fit_to_square(load_image(images[name]), 64) * 255)
        np.testing.assert_array_equal(cache.read(cache.row(name)), expected)


def test_prepare_reports_undecodable_files_and_exits_1(synth_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    broken = sorted(find_images(data).items())[0]
    broken[1].write_bytes(b"this is not a PNG")
    assert train_cli.main(["prepare", "--data-dir", str(data), "--image-size", "64", "--workers", "1"]) == 1
    cache = ImageCache.open(data / "cache-64")
    assert cache.not_ready(cache.names) == [broken[0]]
    with pytest.raises(CacheError, match="not in the prepared cache"):
        CachedDataset(cache, read_data_entry(find_data_entry(data)), CHESTXRAY14_LABELS)


def test_prepare_refuses_a_cache_built_for_other_images(synth_dir: Path, tmp_path: Path) -> None:
    prepare(synth_dir, image_size=64, cache_dir=tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(CacheError, match="choose another --cache-dir"):
        prepare(synth_dir, image_size=96, cache_dir=tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(CacheError, match="run `python -m train prepare`"):
        ImageCache.open(tmp_path / "nowhere")


def test_commands_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command, option in [("synth", "--patients"), ("prepare", "--cache-dir"), ("fit", "--resume")]:
        with pytest.raises(SystemExit) as exit_info:
            train_cli.main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert f"python -m train {command}" in text and option in text
