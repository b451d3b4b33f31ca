"""CXRNet architecture, label vocabularies, config validation and LSE pooling."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from timm.layers import LsePlus2d

import cxr
from cxr.config import ConfigError, ModelConfig
from cxr.labels import CHESTXRAY8_LABELS, CHESTXRAY14_LABELS, label_set
from cxr.model import CXRNet, LSEPool
from tests.conftest import TINY_CONFIG, make_model


def test_labels_are_the_nih_vocabulary_in_paper_order() -> None:
    assert CHESTXRAY14_LABELS == (
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
        "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
    )  # fmt: skip
    assert CHESTXRAY8_LABELS == CHESTXRAY14_LABELS[:8]
    assert label_set("chestxray8") == CHESTXRAY8_LABELS
    with pytest.raises(ValueError, match="chestxray14"):
        label_set("chexpert")


def test_default_model_is_the_chestxray8_design() -> None:
    model = CXRNet()
    assert model.config.trunk == "resnet50" and model.config.image_size == 512
    assert model.transition.in_channels == 2048 and model.transition.out_channels == 1024
    assert model.transition.kernel_size == (1, 1)
    assert (model.pool.r, model.pool.eps) == (10.0, 1e-6)
    assert model.fc.in_features == 1024 and model.fc.out_features == 14
    assert model.labels == CHESTXRAY14_LABELS


def test_shapes_through_features_head_and_forward() -> None:
    model = make_model()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 1024, 8, 8)
        assert model.forward_head(features, pre_logits=True).shape == (2, 1024)
        torch.testing.assert_close(model(x), model.forward_head(features))
        assert model(x).shape == (2, 14)


def test_chestxray8_model_has_eight_outputs() -> None:
    model = make_model(TINY_CONFIG.replace(labels=CHESTXRAY8_LABELS, thresholds=(), temperatures=(), biases=()))
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 8)
    assert model.config.thresholds == (0.5,) * 8 and model.config.biases == (0.0,) * 8


def test_a_config_written_before_biases_existed_loads_with_zero_biases(tmp_path) -> None:
    data = TINY_CONFIG.replace(temperatures=(2.0,) * 14).to_dict()
    del data["biases"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = ModelConfig.load(tmp_path / "config.json")
    assert loaded.biases == (0.0,) * 14 and loaded.temperatures == (2.0,) * 14


def test_lse_pool_equals_timm_lse_when_eps_is_zero() -> None:
    x = torch.randn(3, 16, 8, 8) * 4
    ours = LSEPool(r=10.0, eps=0.0)(x)
    reference = LsePlus2d(r=10.0, r_learnable=False)(x)
    torch.testing.assert_close(ours, reference)


def test_lse_pool_interpolates_between_average_and_max_and_never_overflows() -> None:
    x = torch.randn(2, 4, 16, 16)
    torch.testing.assert_close(LSEPool(r=1e-4, eps=0.0)(x), x.mean(dim=(2, 3)), atol=1e-3, rtol=0)
    torch.testing.assert_close(LSEPool(r=1e4, eps=0.0)(x), x.amax(dim=(2, 3)), atol=1e-3, rtol=0)
    huge = torch.full((1, 2, 4, 4), 1e4)
    assert torch.isfinite(LSEPool(r=10.0)(huge)).all()


@pytest.mark.parametrize("eps", [0.0, 1e-6, 1e-2])
def test_lse_gradient_sums_to_one_per_channel(eps: float) -> None:
    """The property the closed-form Grad-CAM rests on, whatever eps is."""
    x = torch.randn(2, 5, 6, 6, requires_grad=True)
    pooled = LSEPool(r=10.0, eps=eps)(x)
    (grad,) = torch.autograd.grad(pooled.sum(), x)
    torch.testing.assert_close(grad.sum(dim=(2, 3)), torch.ones(2, 5))


def test_building_never_touches_the_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access while building the model")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", refuse)
    monkeypatch.setattr("timm.models._builder.load_pretrained", refuse)
    CXRNet(TINY_CONFIG)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ()}, "non-empty"),
        ({"labels": ("Mass", "Mass")}, "duplicates"),
        ({"image_size": 500}, "multiple of 32"),
        ({"thresholds": (0.5,) * 3}, "thresholds"),
        ({"thresholds": (1.5,) * 14}, "thresholds"),
        ({"temperatures": (0.0,) * 14}, "temperatures"),
        ({"biases": (0.0,) * 13}, "biases"),
        ({"biases": (float("inf"),) * 14}, "biases"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"lse_r": -1.0}, "lse_r"),
    ],
)
def test_invalid_configs_are_refused_with_a_reason(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**changes)


def test_config_round_trips_through_json(tmp_path) -> None:
    config = TINY_CONFIG.replace(thresholds=tuple(0.1 + 0.05 * i for i in range(14)), metadata={"note": "x"})
    config.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == config


def test_config_refuses_unknown_keys_and_newer_formats() -> None:
    with pytest.raises(ConfigError, match="does not know: colour"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "colour": "blue"})
    with pytest.raises(ConfigError, match="format_version 99"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "format_version": 99})


def test_package_exports_resolve_and_labels_import_without_torch() -> None:
    assert all(getattr(cxr, name) is not None for name in cxr.__all__)
    probe = "import sys, cxr.labels; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
