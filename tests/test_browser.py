"""The Space in headless Chromium, desktop and phone: upload, 14 findings, heatmaps, errors, no DICOM identifiers."""

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

from cxr.labels import CHESTXRAY14_LABELS, display_name
from cxr.predictor import Prediction, Predictor
from tests.bad_inputs import PATIENT_IDENTIFIERS, identified_dicom
from tests.conftest import NIH_EXAMPLES
from tests.live_server import LiveApp, assert_same_picture, running_app

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CXR_CHROMIUM", "/usr/bin/chromium")  # CI may point at Google Chrome
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path("/tmp/cxr-screens")  # a copy for people to look at
TIMEOUT_MS = 60_000
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
ROW = re.compile(r"^(?P<name>.+?)(?P<mark> ▲)? (?P<percent>\d+\.\d)%$")  # a findings row: "Pleural thickening ▲ 50.3%"
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


def _open(browser, app: LiveApp, viewport: dict[str, int]):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload input[type=file]", state="attached")
    return context, page


@pytest.fixture
def page(browser, app: LiveApp):
    context, page = _open(browser, app, DESKTOP)
    yield page
    context.close()


@pytest.fixture
def phone(browser, app: LiveApp):
    context, page = _open(browser, app, PHONE)
    yield page
    context.close()


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    return Predictor.from_pretrained(tiny_weights, device="cpu")


def _confidences(page) -> dict[str, float]:
    """The gr.Label's rows: {shown name: probability}, read from each row's <meter value>."""
    meters = page.locator("#findings meter")
    return {m.get_attribute("aria-label"): float(m.get_attribute("value")) for m in meters.all()}


def _assert_rows_match(shown: dict[str, float], expected: Prediction) -> None:
    """Each row is "<display name>[ ▲] <percent with one decimal>%", in descending order, with the exact probability."""
    names = {display_name(label): label for label in expected.labels}
    assert len(shown) == len(names)
    for row, probability in shown.items():
        parts = ROW.match(row)
        assert parts, row
        label = names[parts["name"]]  # a display name: "Pleural thickening", never "Pleural_Thickening"
        assert probability == pytest.approx(expected.probability_by_label[label], abs=1e-6)
        assert parts["percent"] == f"{100 * probability:.1f}"
        assert bool(parts["mark"]) == (label in expected.positive)
    assert list(shown.values()) == sorted(shown.values(), reverse=True)


def _wait_for_results(page) -> None:
    page.wait_for_function("() => document.querySelectorAll('#findings meter').length === 14")
    page.locator("#overlay img").wait_for()
    page.locator("#original img").wait_for()
    page.wait_for_function("() => document.querySelector('#overlay img').complete")


def _box(page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box, f"{selector} is not rendered"
    return box


def _within_first_screen(page, selector: str) -> bool:
    """The whole element lies inside the viewport as the page is first shown (scrolled to the top)."""
    box, viewport = _box(page, selector), page.viewport_size
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and (box["y"] + box["height"] <= viewport["height"])
    )


def _horizontal_overflow(page) -> int:
    """Pixels the page is wider than the viewport (0 when nothing needs sideways scrolling)."""
    return page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")


def _keep_screenshot(page, tmp_path: Path, name: str) -> None:
    """The viewport as it is now, kept in SCREENSHOTS for people to look at."""
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / name)


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


def test_upload_shows_14_findings_and_switching_label_redraws_the_heatmap(page, predictor, tmp_path) -> None:
    image = NIH_EXAMPLES[2]
    expected = predictor.predict(image)
    assert page.locator("#untrained-banner").is_visible()  # the fixture's weights are marked untrained
    assert "not a medical device" in _visible_text(page)

    _upload(page, image)
    _wait_for_results(page)
    _assert_rows_match(_confidences(page), expected)

    top = CHESTXRAY14_LABELS[int(expected.probabilities.argmax())]
    src, first = _overlay(page)
    assert first.shape == (1024, 1024, 3)
    assert_same_picture(first, expected.overlay(top))
    caption = page.locator("#caption").inner_text()
    assert f"{display_name(top)}: {expected.probabilities[CHESTXRAY14_LABELS.index(top)]:.1%}" in caption

    other = next(label for label in ("Edema", "Hernia") if label != top)
    _choose_label(page, other)
    _, second = _overlay(page, previous_src=src)
    changed = np.abs(second.astype(int) - first.astype(int)).max(axis=2) > 10
    assert changed.mean() > 0.05
    assert_same_picture(second, expected.overlay(other))
    page.wait_for_function(f"() => document.querySelector('#caption').innerText.includes('{other}:')")


def test_desktop_shows_results_beside_the_upload_and_a_clicked_finding_gets_its_heatmap(
    page, predictor, tmp_path
) -> None:
    image = NIH_EXAMPLES[2]
    expected = predictor.predict(image)
    _upload(page, image)
    _wait_for_results(page)
    _assert_rows_match(_confidences(page), expected)
    assert _horizontal_overflow(page) <= 0
    for selector in ("#upload", "#original img", "#overlay img", "#caption", "#findings button", "#untrained-banner"):
        assert _within_first_screen(page, selector), selector
    # Side by side: images right of the upload, findings right of the images, all starting at one height.
    upload, heatmap, findings = _box(page, "#upload"), _box(page, "#overlay"), _box(page, "#findings")
    assert upload["x"] + upload["width"] <= heatmap["x"] and heatmap["x"] + heatmap["width"] <= findings["x"]
    assert abs(upload["y"] - findings["y"]) < 5
    assert "Pleural thickening" in page.locator("#findings").inner_text()
    assert "_" not in page.locator("#findings").inner_text() + page.locator("#caption").inner_text()

    src, before = _overlay(page)
    ranked = sorted(expected.labels, key=lambda label: -expected.probability_by_label[label])
    chosen = ranked[3]  # a row further down the list than the map shown first
    row = page.locator("#findings button").nth(3)
    assert row.inner_text().startswith(display_name(chosen))
    row.click()
    _, after = _overlay(page, previous_src=src)
    assert (np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 10).mean() > 0.05
    assert_same_picture(after, expected.overlay(chosen))
    page.wait_for_function(
        f"() => document.querySelector('#caption').innerText.includes({display_name(chosen) + ':'!r})"
    )
    assert page.locator("#label-choice input").input_value().startswith(display_name(chosen))
    _keep_screenshot(page, tmp_path, "desktop-1366x900.png")


def test_on_a_phone_the_results_fill_the_first_screen_and_nothing_is_clipped(phone, predictor, tmp_path) -> None:
    image = NIH_EXAMPLES[1]
    _upload(phone, image)
    _wait_for_results(phone)
    assert _horizontal_overflow(phone) <= 0
    # Image, heatmap and the three most probable findings are on the first screen, without scrolling.
    for selector in ("#original img", "#overlay img", "#caption", ".block.cxr-note", "#untrained-banner"):
        assert _within_first_screen(phone, selector), selector
    rows = phone.locator("#findings button")
    for i in range(3):
        box = rows.nth(i).bounding_box()
        assert box and box["y"] + box["height"] <= PHONE["height"], f"finding {i + 1} is below the first screen"
    assert _box(phone, ".block.cxr-note")["height"] < 150  # compact, and still there
    assert "not a medical device" in phone.locator(".block.cxr-note").first.inner_text()
    _keep_screenshot(phone, tmp_path, "phone-390x844.png")

    phone.get_by_text("About the model and these weights").click()
    sha256 = phone.locator("#about code").first
    sha256.scroll_into_view_if_needed()
    assert re.fullmatch(r"[0-9a-f]{64}", sha256.inner_text())
    box = sha256.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # wrapped, not cut off at the edge
    assert _horizontal_overflow(phone) <= 0
    _keep_screenshot(phone, tmp_path, "phone-about.png")


def test_example_thumbnail_click_runs_the_model_after_the_cache_cleanup(page, app: LiveApp, predictor) -> None:
    time.sleep(max(0.0, app.started + 2 * FORGET_AFTER_S - time.monotonic()))  # the cleanup has run by now
    example = NIH_EXAMPLES[0]
    thumbnail = page.locator(f"#examples img[src*='{example.stem}']")
    page.wait_for_function(f"() => document.querySelector(\"#examples img[src*='{example.stem}']\").complete")
    assert 0 < thumbnail.evaluate("img => img.naturalWidth") <= 160  # a thumbnail, not the 1024 px file
    thumbnail.click()
    _wait_for_results(page)
    _assert_rows_match(_confidences(page), predictor.predict(example))


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
    toast = page.locator(".toast-body.error")  # an error toast, not a warning, that says what happened
    toast.wait_for()
    assert f"Cannot read this file: {message}" in toast.inner_text()
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
