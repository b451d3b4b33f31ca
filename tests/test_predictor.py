"""Predictor: probabilities (bias and temperature), thresholds, maps and overlays, single and batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.image import scale_cam_image

from cxr.cam import FAINT_PEAK, class_activation_maps, upsample_map
from cxr.io import load_image
from cxr.model import CXRNet
from cxr.overlay import MIN_SIDE, add_caption, render_overlay
from cxr.predictor import Predictor
from cxr.preprocess import Letterbox, preprocess
from tests.conftest import NIH_512, NIH_EXAMPLES, NON_NIH_JPEG, ROOT, TINY_CONFIG, make_model

STARTER = ROOT / "cxr" / "starter"
FAINT_PRONE = [*NIH_512, *NIH_EXAMPLES]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    config = TINY_CONFIG.replace(
        thresholds=tuple(np.linspace(0.3, 0.7, 14)),
        temperatures=tuple(np.linspace(0.5, 2.0, 14)),
        biases=tuple(np.linspace(-1.5, 1.0, 14)),
    )
    return Predictor(make_model(config, seed=5), device="cpu")


def test_probabilities_add_the_bias_then_divide_by_the_temperature(predictor: Predictor) -> None:
    prediction = predictor.predict(NIH_512[0])
    with torch.no_grad():
        logits = predictor.model(preprocess(load_image(NIH_512[0]), predictor.config))[0].double().numpy()
    config = predictor.config
    expected = 1 / (1 + np.exp(-(logits + np.array(config.biases)) / np.array(config.temperatures)))
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-5)
    assert list(prediction.probability_by_label) == list(predictor.labels)


def test_positive_labels_are_those_at_or_above_their_own_threshold(predictor: Predictor) -> None:
    prediction = predictor.predict(NIH_512[1])
    expected = {
        label
        for label, p, t in zip(prediction.labels, prediction.probabilities, predictor.config.thresholds, strict=True)
        if p >= t
    }
    assert set(prediction.positive) == expected
    ordered = [prediction.probability_by_label[label] for label in prediction.positive]
    assert ordered == sorted(ordered, reverse=True)
    record = prediction.to_dict()
    assert record["probabilities"] == prediction.probability_by_label and record["positive"] == prediction.positive
    assert record["thresholds"] == {
        label: float(np.float32(t)) for label, t in zip(prediction.labels, predictor.config.thresholds, strict=True)
    }


def test_empty_maps_are_the_all_zero_grad_cams(predictor: Predictor) -> None:
    prediction = predictor.predict(NIH_512[1])
    x = preprocess(prediction.image, predictor.config)
    with torch.inference_mode():
        raw = torch.relu(class_activation_maps(predictor.model, predictor.model.forward_features(x)))[0]
    expected = [label for label, m in zip(prediction.labels, raw, strict=True) if float(m.max()) == 0.0]
    assert 0 < len(expected) < len(prediction.labels)  # this seed has both kinds, so the test can fail
    assert list(prediction.empty_maps) == expected
    assert prediction.to_dict()["empty_maps"] == expected


def test_maps_are_grad_cams_scaled_by_their_strength_and_faint_ones_are_dimmed() -> None:
    """Real starter weights on real radiographs: every map is pytorch-grad-cam's scaling of the ReLU'd map times its
    strength; strong maps are exactly that scaling, faint ones (peak < FAINT_PEAK of the magnitude) dimmed by it."""
    predictor = Predictor.from_pretrained(STARTER, device="cpu")
    predictions = predictor.predict_batch(FAINT_PRONE)
    x = preprocess([p.image for p in predictions], predictor.config)
    with torch.inference_mode():
        signed = class_activation_maps(predictor.model, predictor.model.forward_features(x))
    flat = signed.flatten(-2)
    expected_strength = (flat.amax(-1) / (FAINT_PEAK * flat.abs().amax(-1))).clamp(0, 1).numpy()
    strengths = np.stack([p.map_strengths for p in predictions])
    np.testing.assert_allclose(strengths, expected_strength, rtol=1e-6)
    faint = (strengths > 0) & (strengths < 1)
    assert faint.any() and (strengths == 1).any() and (strengths == 0).any()  # all three kinds, so it can fail
    library = scale_cam_image(torch.relu(signed).flatten(0, 1).numpy()).reshape(signed.shape)
    maps = np.stack([p.maps for p in predictions])
    np.testing.assert_allclose(maps, library * strengths[..., None, None], atol=1e-6)
    i, k = map(int, np.argwhere(faint)[0])
    heat = predictions[i].heatmap(predictions[i].labels[k])
    assert heat.max() == pytest.approx(strengths[i, k], rel=1e-5)  # drawn at its strength, not at full brightness


def test_batch_equals_one_at_a_time(predictor: Predictor) -> None:
    paths = [*NIH_512, NON_NIH_JPEG]
    batched = predictor.predict_batch(paths, batch_size=2)
    for path, result in zip(paths, batched, strict=True):
        single = predictor.predict(path)
        np.testing.assert_allclose(result.probabilities, single.probabilities, atol=1e-5)
        np.testing.assert_allclose(result.maps, single.maps, atol=1e-5)


def test_maps_and_overlays_are_at_the_images_own_resolution(predictor: Predictor) -> None:
    prediction = predictor.predict(NON_NIH_JPEG)  # 885 x 1036, letterboxed inside the model
    assert prediction.maps.shape == (14, 8, 8) and 0 <= prediction.maps.min() and prediction.maps.max() <= 1
    heat = prediction.heatmap("Effusion")
    assert heat.shape == prediction.image.shape == (885, 1036)
    expected = upsample_map(prediction.maps[2], Letterbox(885, 1036)) * prediction.map_strengths[2]
    np.testing.assert_allclose(heat, expected, atol=1e-6)
    overlay = prediction.overlay("Effusion", opacity=0.6)
    assert overlay.shape[1:] == (1036, 3) and overlay.dtype == np.uint8
    picture = render_overlay(prediction.image, heat, opacity=0.6)  # the caption is a band below the picture
    assert picture.shape == (885, 1036, 3) and np.array_equal(overlay[:885], picture)
    assert 885 < overlay.shape[0] < 885 + 200


def test_a_small_image_is_drawn_large_enough_for_its_whole_caption(predictor: Predictor) -> None:
    tiny = np.asarray(load_image(NIH_512[0]))[::12, ::12][:40, :40].copy()  # 40 x 40 px
    prediction = predictor.predict(tiny)
    overlay = prediction.overlay("Infiltration")
    assert overlay.shape[1] == MIN_SIDE and overlay.shape[0] > MIN_SIDE  # enlarged, with the caption below
    band = overlay[MIN_SIDE:]
    text_columns = np.flatnonzero((band > 128).any(axis=(0, 2)))
    assert 4 <= text_columns.min() and text_columns.max() < MIN_SIDE - 4  # inside the width: nothing is cut


def test_a_long_caption_wraps_onto_more_lines_inside_the_width() -> None:
    picture = np.zeros((300, 300, 3), np.uint8)
    short, long = add_caption(picture, "Mass: 2.1%"), add_caption(picture, "Mass: 2.1% " * 12)
    assert np.array_equal(long[:300], picture)
    lines = np.flatnonzero(np.diff((long[300:] > 128).any(axis=(1, 2)).astype(int)) == 1)  # tops of text lines
    assert len(lines) == 3 and long.shape[0] - 300 > 2 * (short.shape[0] - 300)
    assert not (long[300:, -4:] > 128).any()  # no glyph reaches the right edge


def test_overlay_always_states_the_labels_probability(predictor: Predictor) -> None:
    prediction = predictor.predict(NIH_512[0])
    i = prediction.index("Mass")
    assert f"{prediction.probabilities[i]:.1%}" in prediction.caption("Mass")
    assert prediction.caption("Pleural_Thickening").startswith("Pleural thickening: ")  # written for people
    with_caption = prediction.overlay("Mass", opacity=0.0)
    plain = np.repeat((prediction.image * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    height = plain.shape[0]
    assert np.array_equal(with_caption[:height], plain)  # opacity 0 and no caption over the radiograph ...
    band = with_caption[height:]
    assert band.shape[0] > 10 and (band > 128).mean() > 0.02  # ... which is written in white on a band below
    assert (band[..., 0] < 128).mean() > 0.5


def test_unknown_label_is_a_clear_key_error(predictor: Predictor) -> None:
    with pytest.raises(KeyError, match="Unknown label 'Covid'"):
        predictor.predict(NIH_512[0]).heatmap("Covid")


def spread_model(seed: int) -> CXRNet:
    """A random model whose logits span several units (random fc weights give probabilities near 0.5 only)."""
    model = make_model(seed=seed)
    with torch.no_grad():
        model.fc.weight.mul_(60.0)
    return model


def test_channels_last_and_bf16_stay_close_to_fp32() -> None:
    model = spread_model(seed=6)
    reference = Predictor(model).predict(NIH_512[0])
    assert np.ptp(reference.probabilities) > 0.5  # a real spread, so a precision error cannot hide near 0.5
    fast_layout = Predictor(spread_model(seed=6), channels_last=True).predict(NIH_512[0])
    np.testing.assert_allclose(fast_layout.probabilities, reference.probabilities, atol=1e-5)
    bf16 = Predictor(spread_model(seed=6), precision="bf16").predict(NIH_512[0])
    np.testing.assert_allclose(bf16.probabilities, reference.probabilities, atol=0.02)
    with pytest.raises(ValueError, match="precision"):
        Predictor(model, precision="fp8")
