"""Backends (cxr/backends.py): every one answers as torch fp32 does on real radiographs, "auto" picks the fastest
this CPU supports and never serves an export that disagrees, and the export is cached by the weights' SHA-256."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client

import cxr.backends
from cxr.backends import (
    EXPORT_FILE,
    auto_candidates,
    cached_export,
    cpu_has_bf16,
    export_folder,
    map_psnr,
)
from cxr.cam import class_activation_maps, normalize_maps
from cxr.cli import main
from cxr.predictor import Predictor
from cxr.preprocess import preprocess
from cxr.weights import load_model, save_model, state_sha256
from tests.conftest import NIH_512, NIH_EXAMPLES, ROOT, SHARED_DATA, make_model
from tests.live_server import running_app

STARTER = ROOT / "cxr" / "starter"
# Two of the 738 shared NIH images on which plain bf16 flips a near-empty map (33.1 dB heatmaps; bench/backends.py
# covers all 738): one from the starter's training split, one from its validation split.
FLIP_PRONE = [
    path
    for path in (SHARED_DATA / "nih-cxr14" / "images" / name for name in ("00023669_000.png", "00000468_014.png"))
    if path.is_file()
]
REAL_IMAGES = [*NIH_512, *NIH_EXAMPLES, *FLIP_PRONE]
pytestmark = pytest.mark.skipif(not cxr.backends.openvino_available(), reason="openvino is not installed")


def assert_agree(expected: list, got: list, max_dp: float, min_psnr: float = 35.0) -> None:
    """The project's goals for a backend: max |Δp|, identical ▲ decisions, heatmap PSNR per image."""
    for want, have in zip(expected, got, strict=True):
        assert np.abs(want.probabilities - have.probabilities).max() <= max_dp
        assert want.positive == have.positive
        assert map_psnr(want.maps, have.maps) >= min_psnr


@pytest.fixture(scope="module")
def starter_reference() -> tuple[Predictor, list]:
    predictor = Predictor.from_pretrained(STARTER, device="cpu")
    return predictor, predictor.predict_batch(REAL_IMAGES)


@pytest.mark.parametrize("backend", ["openvino", "openvino-bf16"])
def test_served_weights_answer_as_torch_fp32_on_real_radiographs(starter_reference, backend: str) -> None:
    if backend.endswith("bf16") and not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions")
    expected = starter_reference[1]
    predictor = Predictor.from_pretrained(STARTER, device="cpu", backend=backend)
    assert predictor.backend_name == backend
    got = predictor.predict_batch(REAL_IMAGES)
    # fp32 OpenVINO differs only in summation order; bf16 rounds the trunk's arithmetic.
    assert_agree(
        expected, got, max_dp=1e-4 if backend == "openvino" else 0.01, min_psnr=60 if backend == "openvino" else 35
    )
    # The head is the same torch float32 code for every backend: logits from the backend's own map match.
    features = predictor.features(torch.zeros(1, 3, 384, 384))
    assert features.dtype == torch.float32 and features.shape == (1, 1024, 12, 12)


def test_torch_stays_the_bit_identical_default(starter_reference) -> None:
    reference, expected = starter_reference
    assert reference.backend_name == "torch"
    again = Predictor(load_model(STARTER), device="cpu", backend="torch").predict_batch(REAL_IMAGES)
    for want, got in zip(expected, again, strict=True):
        np.testing.assert_array_equal(want.probabilities, got.probabilities)
        np.testing.assert_array_equal(want.maps, got.maps)


def test_auto_picks_the_fastest_backend_this_cpu_supports(caplog: pytest.LogCaptureFixture) -> None:
    expected = "openvino-bf16" if cpu_has_bf16() else "openvino"
    assert auto_candidates()[0] == expected
    with caplog.at_level(logging.INFO, logger="cxr"):
        predictor = Predictor(make_model(), device="cpu", backend="auto")
    assert predictor.backend_name == expected
    assert f"Backend {expected}: agrees with torch fp32" in caplog.text


def test_a_damaged_cached_export_is_never_served_and_is_made_again(caplog: pytest.LogCaptureFixture) -> None:
    model, reference = make_model(seed=3), Predictor(make_model(seed=3), device="cpu")
    sha = state_sha256(model)
    path, _ = cached_export(model, sha)
    cxr.backends.export_openvino(make_model(seed=4), path.parent)  # other weights' graph under this SHA-256
    with caplog.at_level(logging.INFO, logger="cxr"):
        predictor = Predictor(model, device="cpu", backend="auto")
    assert "disagrees with torch fp32 on the probe" in caplog.text and "(cached)" in caplog.text
    assert predictor.backend_name == auto_candidates()[0]  # the fresh export agrees
    assert_agree(reference.predict_batch(NIH_512), predictor.predict_batch(NIH_512), max_dp=0.01)
    assert cached_export(model, sha)[1]  # the repaired export is what the cache holds now


def test_auto_falls_back_to_torch_when_every_export_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(seed=5)
    real_export = cxr.backends.export_openvino
    # A converter that writes some other network's graph: its answers are wrong however often it runs.
    monkeypatch.setattr(cxr.backends, "export_openvino", lambda _, folder: real_export(make_model(seed=6), folder))
    predictor = Predictor(model, device="cpu", backend="auto")
    assert predictor.backend_name == "torch"
    expected = Predictor(make_model(seed=5), device="cpu").predict_batch(NIH_512)
    for want, got in zip(expected, predictor.predict_batch(NIH_512), strict=True):
        np.testing.assert_array_equal(want.probabilities, got.probabilities)
    assert not export_folder(state_sha256(model)).exists()  # the bad export is not kept for the next start
    with pytest.raises(RuntimeError, match="disagrees with torch fp32"):
        Predictor(model, device="cpu", backend="openvino")


def test_the_export_is_made_once_per_weights_file(tmp_path: Path) -> None:
    folder = save_model(make_model(seed=7), tmp_path / "weights")
    model = load_model(folder)
    first_path, first_cached = cached_export(model, state_sha256(model))
    again = load_model(folder)
    second_path, second_cached = cached_export(again, state_sha256(again))
    assert (first_cached, second_cached) == (False, True) and first_path == second_path
    assert json.loads((first_path.parent / "export.json").read_text())["weights_sha256"] == state_sha256(model)

    changed = make_model(seed=7)
    with torch.no_grad():
        changed.fc.bias.add_(1.0)  # the head is not in the export, but the weights file (and its key) changed
    save_model(changed, folder)
    reloaded = load_model(folder)
    third_path, third_cached = cached_export(reloaded, state_sha256(reloaded))
    assert not third_cached and third_path != first_path and (third_path.parent / EXPORT_FILE).is_file()


def test_cli_backend_flag(tiny_weights: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(NIH_512[0]), "--weights", str(tiny_weights), "--backend", "openvino"]) == 0
    captured = capsys.readouterr()
    assert "backend: openvino\n" in captured.err
    row = json.loads(captured.out.splitlines()[0])
    expected = Predictor.from_pretrained(tiny_weights, device="cpu").predict(NIH_512[0])
    np.testing.assert_allclose(list(row["probabilities"].values()), expected.probabilities, atol=1e-5)
    assert (
        main(
            ["predict", str(NIH_512[0]), "--weights", str(tiny_weights), "--backend", "openvino", "--precision", "bf16"]
        )
        == 2
    )


def test_model_info_names_the_backend_of_the_live_server(tiny_weights: Path, tmp_path: Path) -> None:
    expected = Predictor.from_pretrained(tiny_weights, device="cpu", backend="auto").backend_name
    assert expected in cxr.backends.BACKENDS
    with running_app(tiny_weights, tmp_path / "app", CXR_BACKEND="auto") as live:
        client = Client(live.url, verbose=False, download_files=False, analytics_enabled=False)
        assert client.predict(api_name="/model_info")["backend"] == expected


@pytest.mark.skipif(not FLIP_PRONE or not cpu_has_bf16(), reason="needs ../shared/data and a bf16 CPU")
def test_bf16_keeps_the_heatmaps_where_its_rounding_flips_a_faint_maps_sign(starter_reference) -> None:
    """On these images bf16 rounding turns a faint map's tiny peak negative (or back): min-max scaled as
    pytorch-grad-cam does, one hot pixel against an empty map, 33 dB. Drawn at their strength, they agree."""
    reference, expected = starter_reference
    predictor = Predictor.from_pretrained(STARTER, device="cpu", backend="openvino-bf16")
    wanted = expected[-len(FLIP_PRONE) :]
    with torch.inference_mode():
        x = preprocess([want.image for want in wanted], reference.config)
        unscaled = [normalize_maps(torch.relu(class_activation_maps(reference.model, f))).numpy()
                    for f in (reference.features(x), predictor.features(x))]  # fmt: skip
    assert all(map_psnr(a, b) < 35 for a, b in zip(*unscaled, strict=True))
    assert_agree(wanted, predictor.predict_batch(FLIP_PRONE), max_dp=0.01)


SIGNAL_AFTER_FREEING_SCRIPT = """
import ctypes, gc, signal, sys, threading
from cxr.backends import openvino_backend
from cxr.weights import state_sha256
from tests.conftest import make_model

class AltStack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]

def alt_stack_mapped() -> bool:
    stack = AltStack()
    ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack))
    spans = (line.split()[0].split("-") for line in open("/proc/self/maps"))
    return any(int(a, 16) <= stack.sp < int(b, 16) for a, b in spans)

model = make_model(seed=11)
box = [openvino_backend(model, state_sha256(model), "fp32", root=__import__("pathlib").Path(sys.argv[1]))]
threading.Thread(target=lambda: (box.clear(), gc.collect())).start()  # freed elsewhere, as by any GC
import time; time.sleep(0.5)  # the freeing thread has run
print("alt stack mapped:", alt_stack_mapped(), flush=True)
signal.signal(signal.SIGCHLD, lambda *_: print("handled", flush=True))
signal.pthread_kill(threading.main_thread().ident, signal.SIGCHLD)  # as a DataLoader worker's exit would
print("alive", flush=True)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_a_backend_freed_in_another_thread_leaves_the_compiling_thread_able_to_take_signals(tmp_path: Path) -> None:
    """OpenVINO's CPU plugin gives the compiling thread a signal stack in the plugin's memory; with a Core per model
    the plugin unloaded when another thread freed the last one, and the next signal killed the process (SIGSEGV:
    the xdist worker that crashed in CI). The process-wide Core keeps it loaded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_FREEING_SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-2000:]}"
    assert done.stdout.splitlines() == ["alt stack mapped: True", "handled", "alive"]
