"""``python -m cxr``: JSON per image, overlay PNGs, per-file errors, weights errors, dev weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.cli import main
from cxr.predictor import Predictor
from cxr.serving import first_heatmap
from cxr.weights import load_config, save_model, sha256_of
from tests.conftest import DICOM_MONO2, NIH_512, NON_NIH_JPEG, ROOT, TINY_CONFIG, make_model


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_predict_prints_one_json_object_per_image_with_the_predictor_values(tiny_weights, capsys) -> None:
    images = [str(p) for p in (*NIH_512, DICOM_MONO2)]
    assert main(["predict", *images, "--weights", str(tiny_weights), "--batch-size", "2"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [row["image"] for row in rows] == images
    predictor = Predictor.from_pretrained(tiny_weights)
    for row in rows:
        expected = predictor.predict(row["image"])
        assert set(row) == {"image", "overlays", "empty_overlays", "model", *expected.to_dict()}
        assert list(row["probabilities"]) == list(predictor.labels)
        np.testing.assert_allclose(list(row["probabilities"].values()), expected.probabilities, atol=1e-5)
        assert row["positive"] == expected.positive
        assert list(row["thresholds"].values()) == pytest.approx(list(predictor.config.thresholds))
        assert row["overlays"] == {} and row["empty_overlays"] == []  # no --cam-dir
        assert row["model"]["kind"] == "folder" and row["model"]["source"] == tiny_weights.name
        assert row["model"]["weights_sha256"] == sha256_of(tiny_weights / "model.safetensors")
        assert row["model"]["trained"] is False and row["model"]["warning"].startswith("Untrained weights")


def test_untrained_or_synthetic_weights_warn_on_stderr(tiny_weights, tmp_path, capsys) -> None:
    assert main(["predict", str(NIH_512[0]), "--weights", str(tiny_weights)]) == 0
    err = capsys.readouterr().err
    assert f"weights: local folder {tiny_weights}. They were asked for explicitly." in err
    assert "warning: Untrained weights" in err
    synthetic = TINY_CONFIG.replace(
        trained=True, metadata={"training": {"dataset": "synthetic (python -m train synth)"}}
    )
    folder = save_model(make_model(synthetic), tmp_path / "synthetic")
    assert main(["predict", str(NIH_512[0]), "--weights", str(folder)]) == 0
    assert "warning: Weights trained on synthetic images" in capsys.readouterr().err
    trained = save_model(make_model(TINY_CONFIG.replace(trained=True)), tmp_path / "trained")
    assert main(["predict", str(NIH_512[0]), "--weights", str(trained)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_overlay_paths_in_the_json_match_same_named_images(tiny_weights, tmp_path, capsys) -> None:
    first, second = tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(NIH_512[0].read_bytes())
    cams = tmp_path / "cams"
    argv = ["predict", str(first), str(second), "--weights", str(tiny_weights), "--cam-dir", str(cams)]
    assert main([*argv, "--cam-labels", "Mass"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [row["overlays"] for row in rows] == [
        {"Mass": str(cams / "scan_Mass.png")},
        {"Mass": str(cams / "scan-2_Mass.png")},
    ]
    assert all(Path(row["overlays"]["Mass"]).is_file() for row in rows)


def test_closed_pipe_ends_quietly_and_help_is_plain_text(tiny_weights) -> None:
    command = f"{sys.executable} -m cxr info --weights {tiny_weights} | head -n 2"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.stdout.splitlines() == ["{", '  "labels": [']
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "cxr", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert "``" not in help_text and "Weights: --weights FOLDER_OR_REPO, else $CXR_WEIGHTS" in " ".join(
        help_text.split()
    )


def test_bad_files_are_reported_on_stderr_and_the_rest_still_processed(tiny_weights, tmp_path, capsys) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    cams = tmp_path / "cams"
    argv = ["predict", str(bad), str(NON_NIH_JPEG), "--weights", str(tiny_weights), "--cam-dir", str(cams)]
    argv += ["--cam-labels", "Effusion,Mass"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert [row["image"] for row in _json_lines(captured.out)] == [str(NON_NIH_JPEG)]
    assert f"{bad}: The file is not a recognised image" in captured.err
    written = sorted(p.name for p in cams.iterdir())
    assert written == ["16747_3_1_Effusion.png", "16747_3_1_Mass.png"]
    with Image.open(cams / written[0]) as overlay:
        assert overlay.size[0] == 1036 and overlay.size[1] > 885 and overlay.mode == "RGB"  # caption band below


def test_default_overlays_are_the_positive_labels_or_the_first_heatmap(tiny_weights, tmp_path, capsys) -> None:
    cams = tmp_path / "cams"
    assert main(["predict", str(NIH_512[0]), "--weights", str(tiny_weights), "--cam-dir", str(cams)]) == 0
    row = _json_lines(capsys.readouterr().out)[0]
    assert row["positive"]  # this model has positives: one overlay each
    assert sorted(p.name for p in cams.iterdir()) == sorted(f"00000001_000_{label}.png" for label in row["positive"])
    # Weights with no positive here (every threshold near 1): the most probable label above chance with a map.
    folder = save_model(make_model(TINY_CONFIG.replace(thresholds=(0.999,) * 14)), tmp_path / "strict")
    assert main(["predict", str(NIH_512[0]), "--weights", str(folder), "--cam-dir", str(tmp_path / "one")]) == 0
    row = _json_lines(capsys.readouterr().out)[0]
    expected = first_heatmap(Predictor.from_pretrained(folder, device="cpu").predict(NIH_512[0]))[0]
    assert row["positive"] == [] and list(row["overlays"]) == [expected]


def test_empty_overlays_are_named_in_the_json_and_on_stderr(tiny_weights, tmp_path, capsys) -> None:
    cams = tmp_path / "cams"
    argv = ["predict", str(NIH_512[0]), "--weights", str(tiny_weights), "--cam-dir", str(cams), "--cam-labels", "all"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    row = _json_lines(captured.out)[0]
    prediction = Predictor.from_pretrained(tiny_weights, device="cpu").predict(NIH_512[0])
    assert row["empty_overlays"] == list(prediction.empty_maps) == row["empty_maps"]
    assert 0 < len(row["empty_overlays"]) < 14  # both kinds, so the test can fail
    for label in row["overlays"]:
        said = f"the {label} overlay is empty: Grad-CAM finds no region that raises this finding's score"
        assert (said in captured.err) == (label in prediction.empty_maps)
    empty = row["empty_overlays"][0]
    with Image.open(row["overlays"][empty]) as overlay:  # a blank map leaves the radiograph as it is
        picture = np.asarray(overlay)[: prediction.image.shape[0]]
    np.testing.assert_array_equal(picture[..., 0], np.rint(prediction.image * 255).astype(np.uint8))


def test_weights_problems_exit_2_with_a_message(tmp_path, capsys) -> None:
    assert main(["predict", str(NIH_512[0]), "--weights", str(tmp_path)]) == 2
    assert "is not a cxr weights folder" in capsys.readouterr().err


def test_unknown_cam_label_is_a_usage_error(tiny_weights) -> None:
    with pytest.raises(SystemExit, match="unknown label"):
        main(["predict", str(NIH_512[0]), "--weights", str(tiny_weights), "--cam-dir", "x", "--cam-labels", "Flu"])


def test_make_untrained_weights_then_info(tmp_path, capsys) -> None:
    folder = tmp_path / "dev"
    argv = [
        "make-untrained-weights",
        str(folder),
        "--trunk",
        "resnet18",
        "--image-size",
        "128",
        "--labels",
        "chestxray8",
    ]
    assert main(argv) == 0
    config = load_config(folder)
    assert not config.trained and config.num_labels == 8 and config.image_size == 128
    capsys.readouterr()
    assert main(["info", "--weights", str(folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == list(config.labels) and info["served"]["kind"] == "folder"


def test_module_entry_point_runs_as_a_process(tiny_weights) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(NIH_512[1]), "--weights", str(tiny_weights)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(_json_lines(result.stdout)[0]["probabilities"]) == 14
    assert Path(_json_lines(result.stdout)[0]["image"]) == NIH_512[1]
