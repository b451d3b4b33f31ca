"""BatchingPredictor: concurrent callers get exactly the answers of the plain Predictor; failures stay contained."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cxr.batching import BatchingPredictor
from cxr.io import load_image
from cxr.predictor import Predictor
from tests.conftest import NIH_512, NIH_EXAMPLES


@pytest.fixture(scope="module")
def predictor(tiny_weights) -> Predictor:
    return Predictor.from_pretrained(tiny_weights, device="cpu")


def test_concurrent_callers_get_the_plain_predictors_answers(predictor: Predictor) -> None:
    images = [load_image(path) for path in [*NIH_EXAMPLES, *NIH_512]]  # 1024 px and 512 px in the same batches
    expected = [predictor.predict_batch([image])[0] for image in images]
    batching = BatchingPredictor(predictor, max_batch_size=4)
    calls = [images[i % len(images)] for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(batching.predict, calls))
    for i, prediction in enumerate(got):
        reference = expected[i % len(images)]
        assert prediction.image is calls[i]  # each caller gets its own image's result back
        np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=1e-5, rtol=0)
        np.testing.assert_allclose(prediction.maps, reference.maps, atol=1e-4, rtol=0)
    assert sum(size * n for size, n in batching.batch_sizes.items()) == len(calls)
    # 12 threads queue 24 images while each forward runs, so forwards of several images did happen.
    assert 1 < max(batching.batch_sizes) <= 4


def test_a_failing_batch_raises_in_its_callers_and_the_next_one_is_served(predictor: Predictor) -> None:
    batching = BatchingPredictor(predictor)
    with pytest.raises(RuntimeError, match="greater than 0"):
        batching.predict(np.zeros((0, 0), dtype=np.float32))  # no pixels: the resize in preprocessing refuses it
    image = load_image(NIH_512[0])
    np.testing.assert_allclose(
        batching.predict(image).probabilities, predictor.predict_batch([image])[0].probabilities, atol=1e-5, rtol=0
    )


def test_batch_size_must_be_positive(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchingPredictor(predictor, max_batch_size=0)
