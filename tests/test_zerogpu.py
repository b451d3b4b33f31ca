"""The app on ZeroGPU, with the real `spaces` package: detection as `spaces` does it, a no-op decorator elsewhere,
the model on cuda at import and the model call decorated on ZeroGPU, and the call's arguments and results crossing
a forked process as pickles (ZeroGPU's own transport)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spaces
import spaces.config
import torch
from spaces.utils import SimpleQueue

from cxr import zerogpu
from cxr.batching import BatchingPredictor
from cxr.io import load_image
from cxr.predictor import Prediction, Predictor
from tests.conftest import NIH_EXAMPLES, ROOT


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    return Predictor.from_pretrained(tiny_weights, device="cpu")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [load_image(path) for path in NIH_EXAMPLES[:2]]


def assert_same_predictions(actual: list[Prediction], expected: list[Prediction]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.to_dict() == e.to_dict()
        for name in ("probabilities", "thresholds", "maps", "image"):
            np.testing.assert_array_equal(getattr(a, name), getattr(e, name))


@pytest.mark.parametrize("value", [None, "", "true", "True", "TRUE", "1", "t", "false", "0", "yes", "on"])
def test_zero_gpu_is_detected_exactly_as_the_spaces_package_detects_it(monkeypatch, value) -> None:
    monkeypatch.delenv(zerogpu.ZERO_GPU_ENV, raising=False)
    if value is not None:
        monkeypatch.setenv(zerogpu.ZERO_GPU_ENV, value)
    assert zerogpu.on_zero_gpu(os.environ) is spaces.config.Settings().zero_gpu
    assert zerogpu.on_zero_gpu(os.environ) is (value is not None and value.lower() in ("1", "t", "true"))


def test_off_zero_gpu_nothing_changes_the_decorator_is_the_function_and_answers_are_equal(predictor, images) -> None:
    assert not spaces.config.Config.zero_gpu  # this test process is not on ZeroGPU
    assert zerogpu.prepare({}) == {}  # no device option: the predictor's own default, as before
    assert isinstance(zerogpu.serving_front(predictor, 4, environ={}), BatchingPredictor)

    def model_call(x):
        return x

    assert spaces.GPU(duration=zerogpu.GPU_DURATION_S)(model_call) is model_call  # the real decorator, a no-op here
    documented = (ROOT / "docs" / "space.md").read_text(encoding="utf-8")
    assert f"`@spaces.GPU(duration={zerogpu.GPU_DURATION_S})`" in documented
    front = zerogpu.ZeroGpuPredictor(predictor)
    assert front.run_model == front._run_model  # decorated, and still the model call itself
    assert_same_predictions([front.predict(image) for image in images], predictor.predict_batch(images))


def _run_in_forked_worker(arguments: SimpleQueue, results: SimpleQueue, run_model) -> None:
    torch.set_num_threads(1)  # the parent's OpenMP pool does not survive a fork
    (images,) = arguments.get()
    results.put(run_model(images))


def test_the_model_call_arguments_and_results_cross_a_forked_process_as_on_zero_gpu(predictor, images) -> None:
    """ZeroGPU runs the decorated call in a process forked from the server, arguments and result pickled through
    spaces' own SimpleQueue: the same here, with the real decoded images and predictions."""
    front = zerogpu.ZeroGpuPredictor(predictor)
    arguments, results = SimpleQueue(), SimpleQueue()
    worker = multiprocessing.get_context("fork").Process(
        target=_run_in_forked_worker, args=(arguments, results, front._run_model), daemon=True
    )
    worker.start()
    try:
        arguments.put((images,))
        returned = results.get()
    finally:
        worker.join(timeout=60)
    assert worker.exitcode == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker: the same reductions, the same floats
    try:
        expected = predictor.predict_batch(images)
    finally:
        torch.set_num_threads(threads)
    assert_same_predictions(returned, expected)


ZERO_GPU_SCRIPT = """
import json, sys
import torch
import app
from cxr import zerogpu
from cxr.serving import load_served_model
import spaces.zero.decorator, spaces.zero.torch

options = zerogpu.prepare()
served = load_served_model(sys.argv[1], **options)
model = app.Handlers(served).model
parameters = [*served.predictor.model.parameters(), *served.predictor.model.buffers()]
print(json.dumps({
    "options": options,
    "predictor_device": str(served.predictor.device),
    "parameter_devices": sorted({str(p.device) for p in parameters}),
    "front": type(model).__name__,
    "decorated": model.run_model != model._run_model and model.run_model.__wrapped__ == model._run_model,
    "registered": model.run_model in spaces.zero.decorator.decorated_cache,
    "packed_bytes": spaces.zero.torch.pack(),
    "conv_fp32": torch.backends.cudnn.conv.fp32_precision,
}))
"""


def test_on_zero_gpu_the_model_goes_to_cuda_at_import_and_the_app_decorates_the_model_call(
    tiny_weights, predictor, tmp_path
) -> None:
    """The real `spaces` package in ZeroGPU mode (as the Hub sets it), up to where it would ask the Hub's device
    API for a GPU (a closed local port here: nothing may call it before a request)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "GRADIO_", "SPACES_", "ZERO"))}
    env.update(
        SPACES_ZERO_GPU="true",
        SPACES_ZERO_DEVICE_API_URL=f"http://127.0.0.1:{closed_port}",
        ZEROGPU_OFFLOAD_DIR=str(tmp_path / "offload"),  # where spaces packs the weights for its workers
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        OMP_NUM_THREADS="1",
    )
    result = subprocess.run(
        [sys.executable, "-c", ZERO_GPU_SCRIPT, str(tiny_weights)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["options"] == {"device": "cuda"} and facts["predictor_device"] == "cuda"
    assert facts["parameter_devices"] == ["cuda:0"]  # on spaces' cuda stand-in until a worker has a real GPU
    assert facts["front"] == "ZeroGpuPredictor" and facts["decorated"] and facts["registered"]
    # Every tensor the predictor put on cuda (the model's and the calibration's) is handed to the GPU workers.
    tensors = [*predictor.model.parameters(), *predictor.model.buffers(), predictor._temperatures, predictor._biases]
    assert facts["packed_bytes"] == sum(t.numel() * t.element_size() for t in tensors)
    assert facts["conv_fp32"] == "ieee"  # fp32 convolutions on the GPU, not TF32
