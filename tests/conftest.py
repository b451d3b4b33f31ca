"""Shared fixtures: real sample images, the shared NIH metadata, and small random-weight models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cxr.config import ModelConfig
from cxr.model import CXRNet
from cxr.weights import save_model

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"

NIH_512 = [DATA / "00000001_000.png", DATA / "00027426_000.png"]
NIH_RGBA = DATA / "00000004_000_rgba.png"
NON_NIH_JPEG = DATA / "16747_3_1.jpg"
DICOM_MONO2 = DATA / "siim_monochrome2.dcm"
DICOM_MONO1 = DATA / "siim_fake_monochrome1.dcm"
NIH_EXAMPLES = sorted(EXAMPLES.glob("*.png"))

# A small trunk keeps CPU tests fast; the architecture around it is the real one.
TINY_CONFIG = ModelConfig(trunk="resnet18", image_size=256)


@pytest.fixture(scope="session", autouse=True)
def reference_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI and the app run torch fp32 in tests (their answers are compared with ``Predictor``'s to 1e-5), and
    exports are cached in a temporary folder; tests/test_backends.py asks for the other backends by name."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_BACKEND", "torch")
        patch.setenv("CXR_CACHE", str(tmp_path_factory.mktemp("cxr-cache")))
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real NIH metadata and samples); tests needing it skip in a bare clone."""
    if not (SHARED_DATA / "nih-cxr14").is_dir():
        pytest.skip("../shared/data is not present next to this checkout")
    return SHARED_DATA


def make_model(config: ModelConfig = TINY_CONFIG, seed: int = 0) -> CXRNet:
    """A randomly initialised CXRNet in eval mode, deterministic for a seed."""
    torch.manual_seed(seed)
    return CXRNet(config).eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder of a random resnet18 CXRNet at 256 px (untrained)."""
    return save_model(make_model(), tmp_path_factory.mktemp("weights") / "tiny")


# A test evaluation for the tiny model: Cardiomegaly (its second most probable label on the examples) is at
# chance, every other label above it. Numbers invented for the tests, recorded as evaluate records them.
GRADED_AT_CHANCE = ("Cardiomegaly",)
GRADED_EVALUATION = {
    "split": "test",
    "dataset": "NIH ChestX-ray14",
    "n_images": 106,
    "per_label_auroc": {label: 0.48 if label in GRADED_AT_CHANCE else 0.75 for label in TINY_CONFIG.labels},
    "per_label_auroc_ci": {
        label: [0.3, 0.66] if label in GRADED_AT_CHANCE else [0.6, 0.9] for label in TINY_CONFIG.labels
    },
}
GRADED_TOP = "Nodule"  # made the most probable label; its Grad-CAM map is empty on every example image


@pytest.fixture(scope="session")
def graded_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a test evaluation (Cardiomegaly at chance) whose most probable label, Nodule, has an
    all-zero Grad-CAM map: its bias is raised, and a map does not see the bias."""
    model = make_model(TINY_CONFIG.replace(metadata={"evaluation": GRADED_EVALUATION}))
    with torch.no_grad():
        model.fc.bias[TINY_CONFIG.labels.index(GRADED_TOP)] += 2.0
    return save_model(model, tmp_path_factory.mktemp("weights") / "graded")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (the browser tests' and the input check's page tests)."""
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS  # the browser tests own these settings

    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
