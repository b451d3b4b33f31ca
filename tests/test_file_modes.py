"""Weights, configs, checkpoints and caches are written with the process umask, like any other file of the user,
and leave no temporary files behind."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cxr.weights import load_model, save_model, temp_file
from tests.conftest import make_model
from train.data.cache import ImageCache
from train.fitting.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=["umask022", "umask027", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask; the expected mode of a new file is ``0o666 & ~umask``."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def test_saved_weights_and_config_follow_the_umask(tmp_path, umask) -> None:
    model = make_model()
    save_model(model, tmp_path / "w")
    expected = 0o666 & ~umask  # 0644 under the usual 022, readable by colleagues; never mkstemp's fixed 0600
    assert _modes(tmp_path / "w") == {"model.safetensors": expected, "config.json": expected}
    reloaded = load_model(tmp_path / "w")  # the renamed files are the complete, checked ones
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values(), strict=True)
    )


def test_checkpoints_follow_the_umask(tmp_path, umask) -> None:
    path = save_checkpoint(tmp_path / "ckpt" / "epoch-0001.safetensors", {"epoch": 1, "w": torch.arange(3.0)})
    assert _modes(path.parent) == {path.name: 0o666 & ~umask}  # no temporary file left behind either
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(3.0))


def test_image_cache_files_follow_the_umask(tmp_path, umask) -> None:
    ImageCache.create(tmp_path / "cache", ["a.png", "b.png"], image_size=8)
    modes = _modes(tmp_path / "cache")
    assert len(modes) == 3 and set(modes.values()) == {0o666 & ~umask}, modes


def test_temp_files_are_new_and_distinct(tmp_path) -> None:
    first, second = temp_file(tmp_path, "model.safetensors"), temp_file(tmp_path, "model.safetensors")
    assert first != second and first.name.startswith(".model.safetensors.") and first.suffix == ".tmp"
    assert first.stat().st_size == 0 and second.stat().st_size == 0


def test_a_save_clears_the_temporary_files_of_a_save_that_was_killed(tmp_path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        temp_file(folder, name)  # as a save killed mid-write leaves them
    save_model(make_model(), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
