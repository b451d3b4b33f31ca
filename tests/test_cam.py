"""The one-pass closed-form Grad-CAM equals pytorch-grad-cam's GradCAM on the transition layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxr.cam import FAINT_PEAK, library_cams, logits_and_grad_cams, map_strengths, normalize_maps, upsample_map
from cxr.config import ModelConfig
from cxr.io import load_image
from cxr.preprocess import Letterbox, preprocess
from tests.conftest import NIH_512, NIH_EXAMPLES, TINY_CONFIG, make_model


def reference_grad_cams(model, x: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam GradCAM for every label of one image, at the input resolution: (K, S, S)."""
    with GradCAM(model=model, target_layers=[model.transition]) as cam:
        return np.stack(
            [cam(input_tensor=x, targets=[ClassifierOutputTarget(k)])[0] for k in range(model.config.num_labels)]
        )


def ours_at_input_resolution(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        _, maps = logits_and_grad_cams(model, x)
    size = x.shape[-1]
    return np.stack([upsample_map(m, Letterbox(size, size)) for m in normalize_maps(maps)[0].numpy()])


@pytest.mark.parametrize(
    ("config", "images"),
    [
        (TINY_CONFIG, NIH_512),
        pytest.param(ModelConfig(), NIH_EXAMPLES[:1], marks=pytest.mark.slow, id="resnet50-512"),
    ],
    ids=["resnet18-256", "resnet50-512"],
)
def test_all_label_maps_equal_pytorch_grad_cam(config: ModelConfig, images: list) -> None:
    model = make_model(config, seed=1)
    for path in images:
        x = preprocess(load_image(path), config)
        ours = ours_at_input_resolution(model, x)
        reference = reference_grad_cams(model, x)
        assert ours.shape == reference.shape == (config.num_labels, config.image_size, config.image_size)
        # Random weights leave some maps all-zero after ReLU; the others must carry structure.
        assert sum(float(m.max()) > 0.5 for m in reference) >= 3
        np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_raw_maps_equal_unnormalised_grad_cam() -> None:
    """Before scaling, each map equals relu(sum_c mean_grad_c * A_c) computed by autograd."""
    model = make_model(seed=2)
    x = preprocess(load_image(NIH_512[0]), TINY_CONFIG)
    _, maps = logits_and_grad_cams(model, x)
    features = model.forward_features(x).detach().requires_grad_(True)
    logits = model.forward_head(features)
    for k in (0, 5, 13):
        (grad,) = torch.autograd.grad(logits[0, k], features, retain_graph=True)
        expected = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * features).sum(1))[0]
        torch.testing.assert_close(maps[0, k], expected.detach(), rtol=1e-5, atol=1e-9)


def test_logits_equal_forward() -> None:
    model = make_model()
    x = preprocess([load_image(p) for p in NIH_512], TINY_CONFIG)
    logits, maps = logits_and_grad_cams(model, x)
    torch.testing.assert_close(logits, model(x))
    assert maps.shape == (2, 14, 8, 8)


def test_normalize_maps_matches_library_scaling() -> None:
    maps = torch.rand(3, 14, 8, 8) * 5
    expected = scale_cam_image(maps.flatten(0, 1).numpy())
    np.testing.assert_allclose(normalize_maps(maps).flatten(0, 1).numpy(), expected, atol=1e-6)


def test_map_strength_is_one_for_a_clear_peak_zero_for_no_peak_and_in_proportion_below_faint_peak() -> None:
    maps = torch.full((1, 4, 4, 4), -1.0)
    maps[0, 0, 1, 1] = 0.5  # a clear peak
    maps[0, 1, 1, 1] = 0.2 * FAINT_PEAK  # a faint one: a fifth of the faint limit
    maps[0, 2, 1, 1] = FAINT_PEAK  # exactly at the limit
    maps[0, 3] = 0.0  # nothing at all
    torch.testing.assert_close(map_strengths(maps), torch.tensor([[1.0, 0.2, 1.0, 0.0]]))


def test_upsample_map_crops_letterbox_back_to_image() -> None:
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[:, 6:] = 1.0  # hot on the right quarter of the square input
    box = Letterbox(height=300, width=600)  # landscape image padded top and bottom
    up = upsample_map(cam, box)
    assert up.shape == (300, 600)
    assert up[:, 500:].mean() > 0.9 and up[:, :350].max() < 1e-6


def test_library_methods_are_reachable() -> None:
    model = make_model()
    x = preprocess(load_image(NIH_512[0]), TINY_CONFIG)
    maps = library_cams(model, x, [1, 2], method="gradcam++")
    assert maps.shape == (2, 256, 256)
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    with pytest.raises(ValueError, match="Unknown CAM method"):
        library_cams(model, x, [0], method="nope")
