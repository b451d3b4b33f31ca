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

from app import OVERLAY_SIDE
from cxr.labels import display_name
from cxr.overlay import MIN_SIDE, fit_long_side
from cxr.predictor import EMPTY_MAP_NOTE, Prediction, Predictor
from cxr.serving import first_heatmap
from tests.bad_inputs import PATIENT_IDENTIFIERS, identified_dicom
from tests.conftest import GRADED_AT_CHANCE, GRADED_TOP, NIH_EXAMPLES
from tests.live_server import LiveApp, assert_same_picture, running_app

playwright = pytest.importorskip("playwright.sync_api")
axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright")

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
# An at-chance row: "Cardiomegaly 51.7% · AUROC 0.48, 95% CI 0.30–0.66" (never marked).
AT_CHANCE_ROW = re.compile(
    r"^(?P<name>.+?) (?P<percent>\d+\.\d)% · AUROC (?P<auroc>[\d.]+), 95% CI (?P<ci>[\d.]+–[\d.]+)$"
)
ALL_ROWS = "() => document.querySelectorAll('#findings meter, #at-chance meter').length === 14"
FORGET_AFTER_S = 8  # short, so the cache cleanup has run before the example is clicked


@pytest.fixture(scope="module")
def app(graded_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """The Space on the tiny model with a test evaluation (Cardiomegaly at chance; Nodule top with an empty map)."""
    args = ("--forget-after", str(FORGET_AFTER_S))
    with running_app(graded_weights, tmp_path_factory.mktemp("browser-app"), *args) as live:
        yield live


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
def predictor(graded_weights: Path) -> Predictor:
    return Predictor.from_pretrained(graded_weights, device="cpu")


def _confidences(page, where: str = "#findings") -> dict[str, float]:
    """A gr.Label's rows: {shown name: probability}, read from each row's <meter value>."""
    meters = page.locator(f"{where} meter")
    return {m.get_attribute("aria-label"): float(m.get_attribute("value")) for m in meters.all()}


def _assert_rows_match(page, expected: Prediction) -> None:
    """Findings rows are "<display name>[ ▲] <percent with one decimal>%", at-chance rows (in their own list)
    "<display name> <percent>% · AUROC a, 95% CI l–h" and never marked; each list in descending order, with the
    exact probabilities."""
    names = {display_name(label): label for label in expected.labels}
    lists = {"#findings": ROW, "#at-chance": AT_CHANCE_ROW}
    seen = []
    for where, pattern in lists.items():
        shown = _confidences(page, where)
        for row, probability in shown.items():
            parts = pattern.match(row)
            assert parts, row
            label = names[parts["name"]]  # a display name: "Pleural thickening", never "Pleural_Thickening"
            assert probability == pytest.approx(expected.probability_by_label[label], abs=1e-6)
            assert parts["percent"] == f"{100 * probability:.1f}"
            assert (where == "#at-chance") == (label in expected.at_chance)
            assert bool(parts.groupdict().get("mark")) == (label in expected.positive)
            seen.append(label)
        assert list(shown.values()) == sorted(shown.values(), reverse=True)
    assert sorted(seen) == sorted(expected.labels)


def _wait_for_results(page) -> None:
    page.wait_for_function(ALL_ROWS)
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
    _assert_rows_match(page, expected)

    top, _ = first_heatmap(expected)
    src, first = _overlay(page)
    # Drawn once at the size the page shows it (a 1024 px radiograph at 512 px), the caption on a band below.
    assert first.shape[1:] == (OVERLAY_SIDE, 3) and first.shape[0] > OVERLAY_SIDE
    assert_same_picture(first, expected.overlay(top, side=OVERLAY_SIDE))
    caption = page.locator("#caption").inner_text()
    assert f"{display_name(top)}: {expected.probability_by_label[top]:.1%}" in caption

    other = next(label for label in ("Hernia", "Effusion") if label != top)
    _choose_label(page, other)
    _, second = _overlay(page, previous_src=src)
    changed = np.abs(second[:OVERLAY_SIDE].astype(int) - first[:OVERLAY_SIDE].astype(int)).max(axis=2) > 10
    assert changed.mean() > 0.05  # in the pictures, above their captions
    assert_same_picture(second, expected.overlay(other, side=OVERLAY_SIDE))
    page.wait_for_function(f"() => document.querySelector('#caption').innerText.includes('{other}:')")


def test_desktop_shows_results_beside_the_upload_and_a_clicked_finding_gets_its_heatmap(
    page, predictor, tmp_path
) -> None:
    image = NIH_EXAMPLES[2]
    expected = predictor.predict(image)
    _upload(page, image)
    _wait_for_results(page)
    _assert_rows_match(page, expected)
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
    ranked = sorted(
        (label for label in expected.labels if label not in expected.at_chance),
        key=lambda label: -expected.probability_by_label[label],
    )
    chosen = ranked[3]  # a row further down the list than the map shown first
    row = page.locator("#findings button").nth(3)
    assert row.inner_text().startswith(display_name(chosen))
    row.click()
    _, after = _overlay(page, previous_src=src)
    assert (np.abs(after[:OVERLAY_SIDE].astype(int) - before[:OVERLAY_SIDE].astype(int)).max(axis=2) > 10).mean() > 0.05
    assert_same_picture(after, expected.overlay(chosen, side=OVERLAY_SIDE))
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
    _assert_rows_match(page, predictor.predict(example))


def test_bad_file_shows_a_readable_error_and_the_page_keeps_working(page, tmp_path) -> None:
    _upload(page, NIH_EXAMPLES[1])
    page.wait_for_function(ALL_ROWS)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image\n" * 20)
    _clear_upload(page)
    _upload(page, bad)
    message = "The file is not a recognised image: upload a PNG, JPEG or DICOM (.dcm) chest X-ray."
    page.wait_for_function(f"() => document.querySelector('#caption').innerText.includes({message!r})")
    # The previous image's results are gone, so they cannot be mistaken for this file's.
    assert page.locator("#findings meter, #at-chance meter").count() == 0 and page.locator("#overlay img").count() == 0
    toast = page.locator(".toast-body.error")  # an error toast, not a warning, that says what happened
    toast.wait_for()
    assert f"Cannot read this file: {message}" in toast.inner_text()
    _clear_upload(page)
    _upload(page, NIH_EXAMPLES[3])
    page.wait_for_function(ALL_ROWS)


def test_dicom_identifiers_never_reach_the_page(page, tmp_path) -> None:
    dicom = tmp_path / "study.dcm"
    dicom.write_bytes(identified_dicom())
    _upload(page, dicom)
    page.wait_for_function(ALL_ROWS)
    _overlay(page)
    page.get_by_text("API answer for this image").click()  # open the JSON panel too
    page.locator("#api-json").wait_for()
    text, html = _visible_text(page), page.content()
    for value in PATIENT_IDENTIFIERS.values():
        assert value not in text and value not in html
        assert value.replace("^", " ") not in text


SCREENS = {"desktop": DESKTOP, "phone": PHONE}


def _serious_axe_violations(page) -> list[str]:
    """axe-core's critical and serious violations on the page as it is now, Gradio's own markup included."""
    results = axe_playwright.Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[node['target'] for node in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("critical", "serious")
    ]


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_axe_finds_no_critical_or_serious_violation_before_and_after_a_prediction(browser, app, screen) -> None:
    context, page = _open(browser, app, SCREENS[screen])
    try:
        page.wait_for_function("() => document.querySelectorAll('#examples button[aria-label]').length === 4")
        assert _serious_axe_violations(page) == []
        _upload(page, NIH_EXAMPLES[0])
        _wait_for_results(page)
        page.wait_for_function("() => document.querySelector('#overlay img').complete")
        assert _serious_axe_violations(page) == []
    finally:
        context.close()


def test_images_and_thumbnails_have_names_that_say_what_they_show(page, predictor) -> None:
    names = page.locator("#examples button.gallery-item")
    page.wait_for_function("() => document.querySelectorAll('#examples button[aria-label]').length === 4")
    assert [b.get_attribute("aria-label") for b in names.all()] == [
        f"Try example {n}: NIH ChestX-ray14 radiograph {path.stem}" for n, path in enumerate(NIH_EXAMPLES, 1)
    ]
    _upload(page, NIH_EXAMPLES[0])
    _wait_for_results(page)
    shown, _ = first_heatmap(predictor.predict(NIH_EXAMPLES[0]))
    assert page.locator("#original img").get_attribute("alt") == "Uploaded radiograph"
    assert page.locator("#overlay img").get_attribute("alt") == (
        f"Grad-CAM heatmap of {display_name(shown)} over the radiograph"
    )
    _choose_label(page, display_name(GRADED_TOP))
    page.wait_for_function(
        "() => document.querySelector('#overlay img').alt.endsWith(\"empty, no region raises this finding's score\")"
    )


def test_at_chance_labels_are_greyed_below_the_others_and_an_empty_map_is_explained(page, predictor, tmp_path):
    image = NIH_EXAMPLES[0]
    expected = predictor.predict(image)
    assert expected.at_chance == list(GRADED_AT_CHANCE) and GRADED_TOP in expected.empty_maps
    ranked = sorted(expected.labels, key=lambda label: -expected.probability_by_label[label])
    assert ranked[:2] == [GRADED_TOP, *GRADED_AT_CHANCE]  # so the first-heatmap rule must skip both
    _upload(page, image)
    _wait_for_results(page)
    _assert_rows_match(page, expected)

    # The first heatmap: the most probable label above chance whose map is not empty.
    shown, why_not = first_heatmap(expected)
    assert shown == ranked[2] and why_not is None
    _, first = _overlay(page)
    assert_same_picture(first, expected.overlay(shown, side=OVERLAY_SIDE))
    assert page.locator("#caption").inner_text().startswith(f"Heatmap of {display_name(shown)}:")

    # At chance: listed apart, below the findings, greyed, with its test AUROC and interval, never marked.
    at_chance = page.locator("#at-chance")
    assert _box(page, "#at-chance")["y"] >= _box(page, "#findings")["y"] + _box(page, "#findings")["height"]
    row = at_chance.locator("button").first
    assert row.inner_text().startswith("Cardiomegaly ") and "AUROC 0.48, 95% CI 0.30–0.66" in row.inner_text()
    assert "▲" not in at_chance.inner_text()
    grey = at_chance.locator("dt").first.evaluate("e => getComputedStyle(e).color")
    plain = page.locator("#findings dt").first.evaluate("e => getComputedStyle(e).color")
    assert grey == "rgb(71, 85, 105)" and grey != plain
    row.click()
    page.wait_for_function(
        "() => document.querySelector('#caption').innerText.includes("
        "'Cardiomegaly is at chance on the test set: AUROC 0.48, 95% CI 0.30–0.66')"
    )
    said = page.locator("#caption").inner_text()
    assert "at chance on the test set, so never called positive" in said and ", positive)" not in said

    # An empty map: a plain radiograph, and the caption says why.
    _choose_label(page, display_name(GRADED_TOP))
    page.wait_for_function(f"() => document.querySelector('#caption').innerText.includes({EMPTY_MAP_NOTE!r})")
    _, blank = _overlay(page)
    plain = expected.overlay(GRADED_TOP, side=OVERLAY_SIDE)
    assert_same_picture(blank, plain)
    shown = fit_long_side(expected.image, OVERLAY_SIDE)
    picture = blank[: shown.shape[0]].astype(int)
    assert np.abs(picture - np.rint(shown * 255)[..., None]).mean() < 3  # no colour: nothing raised
    _keep_screenshot(page, tmp_path, "desktop-at-chance-and-empty-map.png")


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_the_upload_prompt_is_whole_and_below_its_label(browser, app, screen) -> None:
    context, page = _open(browser, app, SCREENS[screen])
    try:
        box = _box(page, "#upload button.upload-container")
        label = _box(page, "#upload label[data-testid=block-label]")
        # Where the prompt's text itself is drawn ("Drop File Here - or - Click to Upload"), not its wrapper.
        text = page.evaluate(
            """() => { const range = document.createRange();
                range.selectNodeContents(document.querySelector('#upload [data-testid=upload-text]'));
                const r = range.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; }"""
        )
        assert "Click to Upload" in page.locator("#upload [data-testid=upload-text]").inner_text()
        assert box["y"] <= text["top"] and text["bottom"] <= box["y"] + box["height"]  # not cut at the bottom
        assert label["y"] + label["height"] <= text["top"]  # and the label does not cover it
        assert page.locator("#upload .icon-wrap").is_hidden()  # no icon behind the text
    finally:
        context.close()


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_a_tiny_image_is_shown_large_with_its_whole_caption(browser, app, screen, tmp_path) -> None:
    tiny = tmp_path / "tiny.png"
    Image.open(NIH_EXAMPLES[0]).convert("L").resize((40, 40)).save(tiny)
    context, page = _open(browser, app, SCREENS[screen])
    try:
        _upload(page, tiny)
        _wait_for_results(page)
        page.wait_for_function("() => document.querySelector('#overlay img').complete")
        overlay = page.locator("#overlay img")
        assert overlay.evaluate("img => img.naturalWidth") == MIN_SIDE  # drawn at 512 px, caption band below
        minimum = 120 if screen == "phone" else 200
        for selector in ("#original img", "#overlay img"):
            shown = _box(page, selector)
            assert shown["width"] >= minimum and shown["height"] >= minimum, selector
        panel, heatmap = _box(page, "#overlay"), _box(page, "#overlay img")
        assert heatmap["y"] + heatmap["height"] <= panel["y"] + panel["height"] + 1  # not cut by its panel
        caption = page.locator("#caption")
        assert caption.inner_text().endswith(")") or caption.inner_text().endswith(".")  # the whole sentence
        assert float(caption.evaluate("e => parseFloat(getComputedStyle(e.querySelector('p')).fontSize)")) >= 14
    finally:
        context.close()


def test_on_a_phone_the_caption_is_readable_text_under_the_images(phone, predictor, tmp_path) -> None:
    _upload(phone, NIH_EXAMPLES[0])
    _wait_for_results(phone)
    _choose_label(phone, display_name(GRADED_TOP))
    phone.wait_for_function(f"() => document.querySelector('#caption').innerText.includes({EMPTY_MAP_NOTE!r})")
    images, caption = _box(phone, "#images"), _box(phone, "#caption")
    assert images["y"] + images["height"] <= caption["y"] and caption["width"] >= 300  # full width, below
    assert float(phone.locator("#caption p").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 14
    phone.locator("#at-chance").scroll_into_view_if_needed()
    _keep_screenshot(phone, tmp_path, "phone-at-chance-and-empty-map.png")


README_SCREENSHOT_IMAGE = "00000457_002.png"  # NIH test list, Cardiomegaly|Effusion (public domain)


@pytest.fixture(scope="module")
def starter_app(tmp_path_factory: pytest.TempPathFactory):
    """The Space as a fresh machine starts it: no weights given, the Hub offline, so the bundled starter."""
    with running_app(None, tmp_path_factory.mktemp("starter-app")) as live:
        yield live


def test_the_bundled_starter_page_after_a_prediction_as_the_readme_shows_it(
    browser, starter_app: LiveApp, shared_data: Path, tmp_path
) -> None:
    """The README's screenshot (docs/images/page-after-a-prediction.png) is this page, kept by this test."""
    image = shared_data / "nih-cxr14" / "images" / README_SCREENSHOT_IMAGE
    expected = Predictor.from_pretrained(device="cpu").predict(image)  # the bundled starter, torch fp32
    context, page = _open(browser, starter_app, DESKTOP)
    try:
        assert not page.locator("#untrained-banner").is_visible()  # trained weights: no red warning
        assert "starter" in _visible_text(page).lower() and "not a medical device" in _visible_text(page)
        _upload(page, image)
        _wait_for_results(page)
        _assert_rows_match(page, expected)
        assert expected.at_chance and page.locator("#at-chance").is_visible()  # 7 findings at chance, greyed
        _, shown = _overlay(page)
        assert_same_picture(shown, expected.overlay(first_heatmap(expected)[0]))
        _keep_screenshot(page, tmp_path, "readme-page-after-a-prediction.png")
    finally:
        context.close()
