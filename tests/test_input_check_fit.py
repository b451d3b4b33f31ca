"""`python -m train input-check` on small real data: it fits, saves beside the weights, and the folder loads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cxr.input_check import CHECK_FILE, KINDS, UNCHECKED
from cxr.predictor import Predictor
from cxr.weights import load_config, sha256_of
from tests.conftest import NIH_512
from train.__main__ import main as train_main


def test_input_check_command_fits_and_saves_a_check_the_folder_loads(tiny_weights: Path, shared_data, tmp_path, capsys):
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    before = load_config(folder)
    args = ["--nih-train", "4", "--nih-test", "2", "--per-kind", "1", "--limit", "4", "--backend", "torch",
            "--shared", str(shared_data)]  # fmt: skip
    assert train_main(["input-check", str(folder), *args]) == 0
    held_out = json.loads(capsys.readouterr().out)
    assert {"frontal", "lateral", "other_medical", "not_medical"} <= set(held_out)
    assert all(0 < row["n"] <= 4 and 0 <= row["refused"] <= 1 for row in held_out.values())

    config = load_config(folder)
    assert config.input_check["sha256"] == sha256_of(folder / CHECK_FILE)
    assert config.input_check["metadata"]["held_out"] == held_out
    assert config.replace(input_check={}) == before  # nothing else in config.json changed
    check = Predictor.from_pretrained(folder, device="cpu").predict(NIH_512[0]).input_check
    assert check.kind in KINDS and check.kind != UNCHECKED and 0 <= check.score <= 1
