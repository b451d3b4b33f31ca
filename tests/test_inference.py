"""Validation logits (train.fitting.inference) are the served numbers: cxr.cam's float32 head under bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.cam import logits_and_grad_cams
from cxr.predictor import precision_context
from tests.conftest import TINY_CONFIG, make_model
from tests.train_helpers import IMAGE_SIZE, prepared_synth
from train.data.cache import ImageCache, default_cache_dir
from train.data.dataset import CachedDataset, to_model_input
from train.data.nih import official_split
from train.fitting.inference import predict_logits


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> CachedDataset:
    data: Path = prepared_synth(tmp_path_factory.mktemp("synth"), patients=6)
    cache = ImageCache.open(default_cache_dir(data, IMAGE_SIZE))
    return CachedDataset(cache, official_split(data).test, TINY_CONFIG.labels)


def test_bf16_validation_logits_equal_what_the_predictor_serves(dataset: CachedDataset) -> None:
    config = TINY_CONFIG.replace(image_size=IMAGE_SIZE)
    model = make_model(config, seed=2)
    with torch.no_grad():
        model.fc.weight.mul_(60.0)  # logits spread over several units, where a bf16 head errs by ~1e-2
    validation = predict_logits(model, dataset, config, batch_size=4, amp_dtype=torch.bfloat16)

    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.inference_mode(), precision_context(torch.device("cpu"), "bf16"):
        served, _ = logits_and_grad_cams(model, to_model_input(images, config))  # Predictor.predict_batch's call
    assert np.ptp(validation) > 3
    np.testing.assert_allclose(validation, served.numpy(), atol=1e-5)
