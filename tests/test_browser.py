"""The Space in headless Chromium: upload, 14 confidences, heatmap, label switch, errors, no DICOM identifiers."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Predictor
from tests.bad_inputs import PATIENT_IDENTIFIERS, identified_dicom
from tests.conftest import NIH_EXAMPLES
from tests.live_server import LiveApp, running_app

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium")  # CI may point at Google Chrome
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path("/tmp/cxr-screens")  # a copy for people to look at
TIMEOUT_MS = 60_000
FORGET_AFTER_S = 8  # short, so the cache cleanup has run before the example is clicked


@pytest.fixture(scope="module")
def app(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    args = ("--forget-after", str(FORGET_AFTER_S))
    with running_app(tiny_weights, tmp_path_factory.mktemp("browser-app"), *args) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app: LiveApp):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload input[type=file]", state="attached")
    yield page
    context.close()


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    return Predictor.from_pretrained(tiny_weights, device="cpu")


def _confidences(page) -> dict[str, float]:
    """The gr.Label's rows: {shown label: probability}, read from each row's <meter value>."""
    meters = page.locator("#findings meter")
    return {m.get_attribute("aria-label"): float(m.get_attribute("value")) for m in meters.all()}


def _overlay(page, previous_src: str | None = None) -> tuple[str, np.ndarray]:
    """Wait for the heatmap (a new one if ``previous_src`` is given) and download its pixels."""
    image = page.locator("#overlay img")
    image.wait_for()
    if previous_src:
        page.wait_for_function(
            "prev => { const img = document.querySelector('#overlay img'); return img && img.src !== prev; }",
            arg=previous_src,
        )
    src = image.get_attribute("src")
    body = page.request.get(src).body()
    return src, np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def _upload(page, path: Path) -> None:
    page.set_input_files("#upload input[type=file]", str(path))


def _clear_upload(page) -> None:
    page.locator("#upload button[aria-label='Clear']").click()
    page.locator("#upload input[type=file]").wait_for(state="attached")


def _choose_label(page, label: str) -> None:
    page.locator("#label-choice input[role=combobox]").click()
    page.get_by_role("option", name=re.compile(rf"^{label} ")).click()


def _visible_text(page) -> str:
    return page.locator("body").inner_text()


def test_upload_shows_14_confidences_and_switching_label_redraws_the_heatmap(page, predictor, tmp_path) -> None:
    image = NIH_EXAMPLES[2]
    expected = predictor.predict(image)
    assert page.locator("#untrained-banner").is_visible()  # the fixture's weights are marked untrained
    assert "not a medical device" in _visible_text(page)

    _upload(page, image)
    page.wait_for_function("() => document.querySelectorAll('#findings meter').length === 14")
    shown = _confidences(page)
    positive = set(expected.positive)
    for label, probability in expected.probability_by_label.items():
        name = f"{label} ▲" if label in positive else label
        assert shown[name] == pytest.approx(probability, abs=1e-6)
    order = list(shown.values())
    assert order == sorted(order, reverse=True)

    top = CHESTXRAY14_LABELS[int(expected.probabilities.argmax())]
    src, first = _overlay(page)
    assert first.shape == (1024, 1024, 3)
    assert np.abs(first.astype(int) - expected.overlay(top).astype(int)).max() <= 8
    caption = page.locator("#caption").inner_text()
    assert f"{top}: {expected.probabilities[CHESTXRAY14_LABELS.index(top)]:.1%}" in caption

    other = next(label for label in ("Edema", "Hernia") if label != top)
    _choose_label(page, other)
    _, second = _overlay(page, previous_src=src)
    changed = np.abs(second.astype(int) - first.astype(int)).max(axis=2) > 10
    assert changed.mean() > 0.05
    assert np.abs(second.astype(int) - expected.overlay(other).astype(int)).max() <= 8
    page.wait_for_function(f"() => document.querySelector('#caption').innerText.includes('{other}:')")

    shot = tmp_path / "space.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1440
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / "space.png")


def test_example_click_runs_the_model_after_the_cache_cleanup(page, app: LiveApp, predictor) -> None:
    time.sleep(max(0.0, app.started + 2 * FORGET_AFTER_S - time.monotonic()))  # the cleanup has run by now
    example = NIH_EXAMPLES[0]
    page.get_by_role("button", name=example.stem).click()  # gr.Examples entry, labelled with the file stem
    page.wait_for_function("() => document.querySelectorAll('#findings meter').length === 14")
    expected = predictor.predict(example).probability_by_label
    shown = {name.removesuffix(" ▲"): p for name, p in _confidences(page).items()}
    assert shown == pytest.approx(expected, abs=1e-6)


def test_bad_file_shows_a_readable_error_and_the_page_keeps_working(page, tmp_path) -> None:
    _upload(page, NIH_EXAMPLES[1])
    page.wait_for_function("() => document.querySelectorAll('#findings meter').length === 14")
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image\n" * 20)
    _clear_upload(page)
    _upload(page, bad)
    message = "The file is not a recognised image: upload a PNG, JPEG or DICOM (.dcm) chest X-ray."
    page.wait_for_function(f"() => document.querySelector('#caption').innerText.includes({message!r})")
    # The previous image's results are gone, so they cannot be mistaken for this file's.
    assert page.locator("#findings meter").count() == 0 and page.locator("#overlay img").count() == 0
    _clear_upload(page)
    _upload(page, NIH_EXAMPLES[3])
    page.wait_for_function("() => document.querySelectorAll('#findings meter').length === 14")


def test_dicom_identifiers_never_reach_the_page(page, tmp_path) -> None:
    dicom = tmp_path / "study.dcm"
    dicom.write_bytes(identified_dicom())
    _upload(page, dicom)
    page.wait_for_function("() => document.querySelectorAll('#findings meter').length === 14")
    _overlay(page)
    page.get_by_text("API answer for this image").click()  # open the JSON panel too
    page.locator("#api-json").wait_for()
    text, html = _visible_text(page), page.content()
    for value in PATIENT_IDENTIFIERS.values():
        assert value not in text and value not in html
        assert value.replace("^", " ") not in text
