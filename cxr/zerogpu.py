"""The served model on Hugging Face ZeroGPU hardware, and exactly as before everywhere else.

A ZeroGPU Space has no GPU of its own. The ``spaces`` package (the ``zerogpu`` extra) gives one to each call
of a function decorated with ``@spaces.GPU``: the call is scheduled for the visitor who made the request
(quotas are per visitor, read from that request's headers) and runs in a worker process forked from the
server, so its arguments and its result cross a pipe as pickles, while the model itself reaches the worker
by the fork (moved to ``cuda`` at import, packed by ``spaces`` at launch). Off ZeroGPU the decorator
returns the function itself and the ``spaces`` package is never imported.

That is why the ZeroGPU front does not batch across requests like :class:`cxr.batching.BatchingPredictor`:
its worker thread runs outside every request, so ZeroGPU could not tell whose quota a batch spends. Each
request makes its own GPU call with its own decoded image instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import torch

from cxr.batching import BatchingPredictor
from cxr.io import Decoded
from cxr.predictor import Prediction, Predictor

log = logging.getLogger("cxr.zerogpu")

ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # set to "true" by the Hub on ZeroGPU hardware
# The longest one call may hold the GPU: a first call in a fresh worker initialises CUDA and moves ~100 MB of
# weights (seconds); the model itself takes milliseconds. Shorter durations get a better place in ZeroGPU's
# queue and fit more calls into a visitor's daily quota.
GPU_DURATION_S = 20


def on_zero_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs on ZeroGPU, read from the environment as ``spaces.config.Settings`` reads it."""
    value = environ.get(ZERO_GPU_ENV)
    return value is not None and value.lower() in ("1", "t", "true")


class ZeroGpuPredictor:
    """``predict(image)`` as one ``@spaces.GPU`` call per request, the model run in ZeroGPU's forked worker.

    Args:
        predictor: the loaded model, on ``cuda`` (see :func:`prepare`).
        duration_s: the ``@spaces.GPU`` duration of one call.
    """

    def __init__(self, predictor: Predictor, duration_s: int = GPU_DURATION_S) -> None:
        import spaces  # the zerogpu extra; imported only here, so other hardware never needs it

        self.predictor = predictor
        self.run_model = spaces.GPU(duration=duration_s)(self._run_model)

    def predict(self, image: Decoded | np.ndarray) -> Prediction:
        """Prediction for one decoded upload (:func:`cxr.io.decode`) or (H, W) float32 image; blocks until done."""
        return self.run_model([image])[0]

    def _run_model(self, images: list[Decoded | np.ndarray]) -> list[Prediction]:
        """The model call: decoded images in, predictions out (both pickled across ZeroGPU's process boundary)."""
        return self.predictor.predict_batch(images, len(images))


def prepare(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Ready the process before the weights load; returns the predictor options for this hardware.

    On ZeroGPU: imports ``spaces`` (before anything initialises CUDA, as it requires), keeps convolutions in
    IEEE fp32 as on the CPU (cuDNN would otherwise use TF32, ~1e-3 off), and places the model on ``cuda``.
    Elsewhere: nothing, and no options (the predictor's own default device, as before).
    """
    if not on_zero_gpu(environ):
        return {}
    import spaces  # noqa: F401  (patches torch so that models can go to cuda before a GPU is attached)

    torch.backends.cudnn.conv.fp32_precision = "ieee"
    return {"device": "cuda"}


def serving_front(
    predictor: Predictor, max_batch_size: int, environ: Mapping[str, str] = os.environ
) -> BatchingPredictor | ZeroGpuPredictor:
    """What the app's requests call ``predict(image)`` on: one GPU call per request on ZeroGPU, else the batcher."""
    if on_zero_gpu(environ):
        log.info("ZeroGPU: the model runs on %s, one @spaces.GPU call per request.", predictor.device)
        return ZeroGpuPredictor(predictor)
    return BatchingPredictor(predictor, max_batch_size=max_batch_size)
