"""The input check in the live Space with the bundled starter: /predict and /cam records, and the page in Chromium.

A refused image (a photograph, a lateral, a CT slice) shows the check's message in place of the findings
and heatmap, on desktop and phone, and its raw output only when "show anyway" is ticked; an inverted
radiograph is read corrected, with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app import EMPTY_CAPTION
from cxr.input_check import FRONTAL, INVERTED_NOTE, LATERAL, MESSAGES, NOT_MEDICAL, OTHER_MEDICAL, UNFAMILIAR
from cxr.io import load_image
from cxr.page_text import NOT_READ
from cxr.predictor import Predictor
from tests.conftest import NIH_EXAMPLES, ROOT
from tests.live_server import LiveApp, running_app
from tests.test_browser import (
    DESKTOP,
    PHONE,
    _box,
    _clear_upload,
    _keep_screenshot,
    _open,
    _upload,
)
from train.input_check import negatives

playwright = pytest.importorskip("playwright.sync_api")

STARTER = ROOT / "cxr" / "starter"
REFUSED_KINDS = (LATERAL, OTHER_MEDICAL, NOT_MEDICAL)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    with running_app(STARTER, tmp_path_factory.mktemp("check-app")) as live:
        yield live


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """A photograph, a lateral (ood-dev, read from ../shared), a CT slice (pydicom's) and an inverted radiograph."""
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("check-images")
    photo = folder / "astronaut.jpg"
    Image.fromarray(negatives.sample_photographs(("astronaut",))["astronaut"]).save(photo, quality=90)
    negative = folder / "negative.png"
    Image.fromarray(np.rint((1 - load_image(NIH_EXAMPLES[0])) * 255).astype(np.uint8)).save(negative)
    return {
        "photograph": photo,
        "lateral": shared_data / "ood-dev" / "lateral" / "viewsplit_1.png",
        "ct": Path(get_testdata_file("CT_small.dcm")),
        "inverted": negative,
    }


REFUSED = ("photograph", "lateral", "ct")


def test_predict_and_cam_records_carry_the_check(app: LiveApp, images: dict[str, Path]) -> None:
    client = Client(app.url, verbose=False, analytics_enabled=False)
    expected = Predictor.from_pretrained(STARTER, device="cpu")
    for name in REFUSED:
        answer, _ = client.predict(handle_file(str(images[name])), api_name="/predict")
        library = expected.predict(images[name]).input_check.to_dict()
        assert answer["input_check"]["score"] == pytest.approx(library.pop("score"), abs=1e-5)  # threads, batching
        assert {k: answer["input_check"][k] for k in library} == library
        assert answer["input_check"]["accepted"] is False and answer["input_check"]["kind"] in REFUSED_KINDS
        assert answer["input_check"]["message"] in {*MESSAGES.values(), UNFAMILIAR}
        assert answer["positive"] == []
        cam, _ = client.predict(handle_file(str(images[name])), "Effusion", 0.5, api_name="/cam")
        assert cam["input_check"] == answer["input_check"] and cam["positive"] is False
    answer, _ = client.predict(handle_file(str(images["inverted"])), api_name="/predict")
    original, _ = client.predict(handle_file(str(NIH_EXAMPLES[0])), api_name="/predict")
    assert answer["input_check"]["inverted"] is True and answer["input_check"]["accepted"] is True
    assert answer["input_check"]["kind"] == FRONTAL and original["input_check"]["inverted"] is False
    gaps = [abs(answer["probabilities"][k] - original["probabilities"][k]) for k in original["labels"]]
    assert max(gaps) <= 0.05


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_refused_image_shows_the_message_instead_of_findings(browser, app, images, viewport, tmp_path) -> None:
    context, page = _open(browser, app, viewport)
    try:
        for i, name in enumerate(REFUSED):
            if i:
                _clear_upload(page)
                page.wait_for_function(
                    "text => document.querySelector('#caption').innerText.includes(text)", arg=EMPTY_CAPTION
                )
            _upload(page, images[name])
            page.wait_for_function("text => document.querySelector('#caption').innerText.includes(text)", arg=NOT_READ)
            caption = page.locator("#caption").inner_text()
            assert any(message in caption for message in {*MESSAGES.values(), UNFAMILIAR})
            page.locator("#show-anyway").wait_for(state="visible")
            page.locator("#original img").wait_for()
            page.wait_for_function("() => document.querySelector('#original img').complete")
            below = _box(page, "#show-anyway")["y"] > _box(page, "#caption")["y"]
            assert below, "the show-anyway box sits under the message"
            assert (
                page.locator("#findings meter, #at-chance meter").count() == 0
                and page.locator("#overlay img").count() == 0
            )
            _keep_screenshot(page, tmp_path, f"check-{name}-{'phone' if viewport is PHONE else 'desktop'}.png")
        page.locator("#show-anyway input").check()
        page.wait_for_function("() => document.querySelectorAll('#findings meter, #at-chance meter').length === 14")
        assert "Raw output, not findings" in page.locator("#caption").inner_text()
        _keep_screenshot(page, tmp_path, f"check-shown-anyway-{'phone' if viewport is PHONE else 'desktop'}.png")
    finally:
        context.close()


@pytest.mark.browser
def test_an_inverted_radiograph_is_read_corrected_with_a_note(browser, app, images, tmp_path) -> None:
    context, page = _open(browser, app, DESKTOP)
    try:
        _upload(page, images["inverted"])
        page.wait_for_function("() => document.querySelectorAll('#findings meter, #at-chance meter').length === 14")
        assert INVERTED_NOTE[:40] in page.locator("#caption").inner_text()
        assert not page.locator("#show-anyway").is_visible()
        _keep_screenshot(page, tmp_path, "check-inverted-desktop.png")
    finally:
        context.close()
