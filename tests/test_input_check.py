"""The bundled starter's input check on its held-out images, the inverted case, and the unchanged findings.

The held-out part (:mod:`train.input_check.samples`: whole groups by hash, NIH test-list patients, pydicom's CT_small
and MR_small) chose nothing in the fit; every image of it is answered once end to end
(:func:`train.input_check.fit_checker.held_out_rates`, module fixture, the backend the fit recorded) and the per-class
rates are asserted against the goals of issue 16 and against what config.json records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr import cli
from cxr.input_check import CHECK_FILE, FRONTAL, NOT_MEDICAL, OTHER_MEDICAL, UNCHECKED, InputChecker
from cxr.io import Upload, colourfulness, decode
from cxr.predictor import Predictor
from cxr.preprocess import preprocess
from cxr.weights import WeightsError, load_config, load_model, save_input_check
from tests.conftest import NIH_512, ROOT
from train.input_check import negatives

STARTER = ROOT / "cxr" / "starter"
RECORDED = load_config(STARTER).input_check["metadata"]


@pytest.fixture(scope="module")
def starter() -> Predictor:
    return Predictor.from_pretrained(STARTER, device="cpu")


@pytest.fixture(scope="module")
def held_out(shared_data: Path) -> tuple[dict, dict[str, tuple[str, object]]]:
    """(per-class rates, {key: (label, Prediction)}) of every held-out image of the check's data, answered once
    by the backend the fit recorded (what config.json's rates were measured with)."""
    from train.input_check.fit_checker import held_out_rates
    from train.input_check.samples import all_samples

    predictor = Predictor.from_pretrained(STARTER, device="cpu", backend=RECORDED["held_out_backend"])
    rates, answered = held_out_rates(predictor, [s for s in all_samples(shared_data) if s.held_out])
    for s, p in answered:  # the closing note's examples come from this (pytest -s)
        c = p.input_check
        print(f"held-out {s.label} {s.key} accepted={c.accepted} kind={c.kind} inverted={c.inverted} {c.score:.3f}")
    return rates, {s.key: (s.label, p) for s, p in answered}


@pytest.mark.parametrize(
    ("label", "rate", "goal"),
    [
        ("frontal", "accepted", 0.95),
        ("lateral", "refused", 0.90),
        ("other_medical", "refused", 0.95),
        ("not_medical", "refused", 0.97),
        ("inverted", "named_right", 5 / 6),
    ],
)
def test_held_out_rates_meet_the_goals(held_out, label: str, rate: str, goal: float) -> None:
    rates, _ = held_out
    assert rates[label]["n"] >= 10
    assert rates[label][rate] >= goal, f"{label}: {rates[label]}"


def test_config_records_the_rates_measured_end_to_end(held_out) -> None:
    """One source: config.json (and the README, which quotes it) holds the rates this end-to-end run measures."""
    rates, _ = held_out
    assert RECORDED["held_out"] == rates


def test_inverted_radiographs_are_corrected_and_answered_like_the_original(held_out) -> None:
    _, answered = held_out
    negatives_ = {key: p for key, (label, p) in answered.items() if label == "inverted"}
    assert len(negatives_) >= 6
    recognised = [key for key, p in negatives_.items() if p.input_check.inverted and p.input_check.accepted]
    assert len(recognised) >= 5 / 6 * len(negatives_)
    for key in recognised:
        original = answered[key.removesuffix(":inverted")][1]
        check = negatives_[key].input_check
        assert check.kind == FRONTAL and "inverted" in check.message
        assert np.abs(negatives_[key].probabilities - original.probabilities).max() <= 0.05


def test_accepted_images_keep_the_findings_of_the_model_without_a_check(starter: Predictor) -> None:
    plain = Predictor(load_model(STARTER), device="cpu")
    plain.input_checker = None
    images = [*NIH_512, ROOT / "examples" / "00000001_000.png"]
    checked, unchecked = starter.predict_batch(images), plain.predict_batch(images)
    for a, b in zip(checked, unchecked, strict=True):
        assert a.input_check.accepted and a.input_check.kind == FRONTAL and b.input_check.kind == UNCHECKED
        assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.maps, b.maps)
        assert a.positive == b.positive


def test_a_folder_without_a_check_answers_unchecked_and_a_tampered_check_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(STARTER / "model.safetensors", old)
    config = json.loads((STARTER / "config.json").read_text())
    checker_settings = config.pop("input_check")
    (old / "config.json").write_text(json.dumps(config))
    prediction = Predictor.from_pretrained(old, device="cpu").predict(NIH_512[0])
    assert prediction.input_check.kind == UNCHECKED and prediction.input_check.accepted
    assert "no input check" in prediction.input_check.message

    checker = InputChecker.load(STARTER, checker_settings)
    save_input_check(checker, old)
    assert load_model(old).input_checker is not None
    (old / CHECK_FILE).write_bytes((old / CHECK_FILE).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(WeightsError, match="SHA-256"):
        load_model(old)


def test_cli_json_carries_the_check_and_stderr_names_the_refused_file(tmp_path: Path, capsys) -> None:
    document = tmp_path / "document.png"
    negatives.make("document", 1000).save(document)
    assert cli.main(["predict", "--weights", str(STARTER), str(document), str(NIH_512[0])]) == 0
    out, err = capsys.readouterr()
    refused, accepted = (json.loads(line) for line in out.splitlines())
    assert refused["input_check"]["accepted"] is False and refused["input_check"]["kind"] == NOT_MEDICAL
    assert refused["positive"] == []
    assert accepted["input_check"] == {**accepted["input_check"], "accepted": True, "kind": FRONTAL, "message": ""}
    assert f"{document}: refused by the input check (not_medical_image)" in err
    assert str(NIH_512[0]) + ":" not in err


def test_a_photograph_from_disk_is_refused(starter: Predictor, tmp_path: Path) -> None:
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(negatives.sample_photographs(("coffee",))["coffee"]).save(photo)
    check = starter.predict(photo).input_check
    assert not check.accepted and check.kind == NOT_MEDICAL and check.score < 0.5


def test_the_upload_says_its_colourfulness_and_dicom_modality(shared_data: Path, tmp_path: Path) -> None:
    """Hasler and Süsstrunk's M by hand: a uniform pure red has rg = 255, yb = 127.5 and no spread."""
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255
    assert colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
    grey_rgb = np.repeat(np.asarray(Image.open(NIH_512[0]).convert("L"))[..., None], 3, axis=2)
    Image.fromarray(grey_rgb).save(tmp_path / "grey.jpg", quality=80)  # JPEG chroma noise on a grey radiograph
    assert decode(tmp_path / "grey.jpg").upload.colourfulness < 1.0
    assert decode(NIH_512[0]).upload == Upload(0.0, None)
    assert decode(red).upload.colourfulness == colourfulness(red)
    from pydicom.data import get_testdata_file

    assert decode(get_testdata_file("CT_small.dcm")).upload.modality == "CT"
    assert decode(get_testdata_file("examples_rgb_color.dcm")).upload.modality == "US"
    radiograph = next((shared_data / "samples" / "dicom").glob("1.2.*.dcm"))
    assert decode(radiograph).upload.modality == "CR"


def test_the_rules_come_before_the_head(starter: Predictor) -> None:
    """Another DICOM modality is other medical and a colourful upload is no radiograph, whatever the head says;
    a radiography modality or a grey upload leaves it to the head."""
    checker = starter.input_checker
    image = decode(NIH_512[0]).image
    with torch.inference_mode():
        features = starter.features(preprocess([image], starter.config))[0]
    assert checker.check(image, features).accepted
    assert checker.check(image, features, upload=Upload(0.0, "CR")).accepted
    ct = checker.check(image, features, upload=Upload(0.0, "CT"))
    assert not ct.accepted and ct.kind == OTHER_MEDICAL
    colourful = checker.check(image, features, upload=Upload(checker.colour_limit + 1, None))
    assert not colourful.accepted and colourful.kind in (OTHER_MEDICAL, NOT_MEDICAL)
    assert checker.check(image, features, upload=Upload(checker.colour_limit - 1, None)).accepted


def test_pydicoms_ct_is_refused_as_another_modality(starter: Predictor) -> None:
    from pydicom.data import get_testdata_file

    check = starter.predict(get_testdata_file("CT_small.dcm")).input_check
    assert not check.accepted and check.kind == OTHER_MEDICAL and "CT" in check.message
