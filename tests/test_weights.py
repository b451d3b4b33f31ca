"""Weights folders: exact round trip, and a clear refusal for every kind of broken folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cxr.labels import CHESTXRAY8_LABELS
from cxr.weights import CONFIG_FILE, WEIGHTS_FILE, WeightsError, load_model, save_model, sha256_of
from tests.conftest import TINY_CONFIG, make_model


@pytest.fixture
def folder(tiny_weights: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny weights folder, free to break."""
    return Path(shutil.copytree(tiny_weights, tmp_path / "weights"))


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    model = make_model(seed=3)
    save_model(model, tmp_path / "w")
    loaded = load_model(tmp_path / "w")
    assert not loaded.training
    assert loaded.config == model.config.replace(metadata={"weights_sha256": sha256_of(tmp_path / "w" / WEIGHTS_FILE)})
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def _break_config(folder: Path, **changes) -> None:
    path = folder / CONFIG_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / WEIGHTS_FILE).unlink(), "model.safetensors missing"),
        (lambda f: (f / CONFIG_FILE).unlink(), "config.json missing"),
        (lambda f: (f / CONFIG_FILE).write_text("{not json"), "not readable JSON"),
        (
            lambda f: _break_config(f, labels=list(CHESTXRAY8_LABELS), thresholds=[], temperatures=[], biases=[]),
            r"\(8, 1024\)",
        ),
        (lambda f: _break_config(f, trunk="resnet34"), "does not fit its config.json"),
        (lambda f: _break_config(f, trunk="no_such_net"), "Unknown timm trunk"),
        (lambda f: _break_config(f, image_size=100), "multiple of 32"),
        (lambda f: _break_config(f, surprise=1), "does not know: surprise"),
        (lambda f: (f / "pytorch_model.bin").write_bytes(b"pickle"), "pickle"),
        (lambda f: (f / "extra.ckpt").write_bytes(b"pickle"), "safetensors only"),
    ],
    ids=["no-weights", "no-config", "bad-json", "label-count", "trunk", "unknown-trunk", "size", "key", "bin", "ckpt"],
)
def test_broken_folders_fail_with_a_message_that_says_what_is_wrong(folder: Path, breakage, message: str) -> None:
    breakage(folder)
    with pytest.raises(WeightsError, match=message):
        load_model(folder)


def test_truncated_weights_fail_the_checksum(folder: Path) -> None:
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="does not match the SHA-256"):
        load_model(folder)


def test_corrupted_weights_without_checksum_fail_as_unreadable(folder: Path) -> None:
    _break_config(folder, metadata={})
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_model(folder)


def test_missing_and_unexpected_tensors_are_named(folder: Path) -> None:
    _break_config(folder, metadata={})
    state = load_file(folder / WEIGHTS_FILE)
    state["extra.weight"] = state.pop("fc.bias")
    save_file(state, folder / WEIGHTS_FILE)
    with pytest.raises(WeightsError, match=r"1 tensor\(s\) missing \(e\.g\. fc\.bias\).*extra\.weight"):
        load_model(folder)


@pytest.mark.parametrize(
    ("source", "message"),
    [("not a repo id", "neither an existing folder nor"), ("./relative/missing", "neither an existing folder")],
)
def test_sources_that_are_neither_folder_nor_repo(source: str, message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        load_model(source)


def test_a_file_is_not_a_weights_folder(folder: Path) -> None:
    with pytest.raises(WeightsError, match="is a file"):
        load_model(folder / CONFIG_FILE)


def test_uncached_hub_repo_offline_says_so(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="not in the local Hugging Face cache"):
        load_model("cxr-project/does-not-exist", revision="v0.1.0", cache_dir=tmp_path)


def test_tiny_config_is_what_the_fixture_saved(tiny_weights: Path) -> None:
    assert load_model(tiny_weights).config.replace(metadata={}) == TINY_CONFIG
