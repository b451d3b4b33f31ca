"""Gradio Space: 14 chest X-ray findings with a Grad-CAM heatmap for each, from one forward pass.

Run ``python app.py --weights DIR`` (or with Hub access, ``python app.py``). The page and the API
(``/predict``, ``/cam``, ``/model_info``) are thin wiring over :mod:`cxr.serving` and :mod:`cxr.predictor`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

from cxr.backends import AUTO, BACKENDS, default_backend
from cxr.batching import BatchingPredictor
from cxr.io import MAX_FILE_BYTES, InvalidImageError, load_image
from cxr.labels import display_name
from cxr.predictor import Prediction
from cxr.serving import (
    ServedModel,
    about_markdown,
    cam_record,
    load_served_model,
    model_info,
    prediction_record,
    top_label,
    trained_on,
    weights_banner,
)

log = logging.getLogger("cxr.app")

EXAMPLES = sorted((Path(__file__).resolve().parent / "examples").glob("*.png"))
THUMBNAILS = [path.parent / "thumbnails" / f"{path.stem}.jpg" for path in EXAMPLES]  # 160 px, a few kB each
MAX_BATCH_SIZE = 4  # images in one forward pass at most (on a CPU, larger batches gain little and cost memory)
MODEL_CONCURRENCY = 2 * MAX_BATCH_SIZE  # requests decoding or waiting for a batch; the batcher runs one forward
QUEUE_SIZE = 32  # requests waiting beyond this are turned away at once instead of timing out
RENDER_CONCURRENCY = 8  # re-drawing an overlay from the kept maps is cheap and must not wait behind model runs
SESSION_TTL_S = 1800  # a result (decoded image + maps) stays in the server's memory at most this long
SESSIONS_KEPT = 200  # at most this many sessions' results in memory (about 5 MB each)
DEFAULT_OPACITY = 0.5
IMAGE_FORMAT = "jpeg"  # a 1024 px overlay encodes in ~5 ms as JPEG, ~480 ms as PNG (bench/app_latency.py)
POSITIVE_MARK = "▲"
REFUSED = "Cannot read this file"
TITLE = "Chest X-ray findings with Grad-CAM"
EMPTY_CAPTION = "Upload a chest X-ray to see findings."
EXPIRED_CAPTION = "The result for this image has expired or there is none yet: upload an image."

CSS = """
.block.cxr-note {border-left: 4px solid #1d4ed8; background: #eff6ff; padding: 6px 12px !important; border-radius: 6px;}
.block.cxr-untrained {border-left: 4px solid #b91c1c; background: #fef2f2; padding: 6px 12px !important;
  border-radius: 6px;}
.cxr-untrained p {color: #7f1d1d;}
.cxr-note p, .cxr-untrained p {margin: 0 !important; font-size: 0.9rem !important;}
#caption {min-height: 1.6em;}
#findings button {cursor: pointer;}
#findings dt {font-family: var(--font) !important;}
#findings dd.confidence {display: none;}  /* whole percents: the one-decimal value is in each row's name */
#about code {overflow-wrap: anywhere; white-space: normal;}
#examples img {height: 72px; width: 72px; object-fit: cover;}
@media (max-width: 640px) {
  /* A phone gets one column, results first: upload, images, caption, findings, then the controls and examples. */
  h1 {font-size: 1.05rem !important; margin: 0 !important;}
  .block.cxr-note, .block.cxr-untrained {padding: 4px 8px !important;}
  .cxr-note p, .cxr-untrained p {font-size: 0.75rem !important; line-height: 1.3 !important;}
  #main {flex-direction: column; flex-wrap: nowrap;}
  #main > .column {display: contents;}
  #upload {order: 1;} #images {order: 2;} #caption {order: 3;} #findings {order: 4;} #controls {order: 5;}
  #examples {order: 6;}
  #images {flex-wrap: nowrap !important; gap: 6px !important;}
  #images > div {min-width: 0 !important;}
  #findings button {padding-top: 0; padding-bottom: 0;}
}
"""


@dataclass(frozen=True)
class Page:
    """The page's components that events read or write."""

    result: gr.State  # this session's Prediction (decoded image and maps), for redraws without a model run
    refusal: gr.State  # why the last upload was refused, for the error toast
    upload: gr.File
    examples: gr.Dataset
    original: gr.Image
    overlay: gr.Image
    caption: gr.Markdown
    label: gr.Dropdown
    opacity: gr.Slider
    findings: gr.Label
    answer: gr.JSON


def build_demo(served: ServedModel, forget_after_s: int = 120) -> gr.Blocks:
    """The page and its API endpoints for one loaded model.

    Args:
        served: the model and what is known about its weights.
        forget_after_s: uploads and rendered images are deleted from the server's disk this many
            seconds after they were written (checked every ``forget_after_s / 2`` seconds).
    """
    handlers = Handlers(served)
    sweep = max(1, forget_after_s // 2)
    # Served from examples/ as they are: copies in Gradio's cache would be swept away with the uploads.
    gr.set_static_paths([*EXAMPLES, *THUMBNAILS])
    with gr.Blocks(title=TITLE, delete_cache=(sweep, forget_after_s)) as demo:
        _header(served)
        result = gr.State(None, time_to_live=SESSION_TTL_S)
        refusal = gr.State(None)
        with gr.Row(equal_height=False, elem_id="main"):
            with gr.Column(scale=3, min_width=260):
                upload, examples = _inputs_column()
            with gr.Column(scale=7, min_width=320):
                original, overlay, caption, label, opacity = _results_column(handlers.choices)
            with gr.Column(scale=4, min_width=260):
                findings = _findings_column(len(handlers.labels))
        answer = _accordions(served)
        page = Page(result, refusal, upload, examples, original, overlay, caption, label, opacity, findings, answer)
        _wire_page_events(page, handlers)
        _add_api_endpoints(page, handlers)
    return demo


def _header(served: ServedModel) -> None:
    """Title, the research-use notice and, where the weights call for one, a banner about them."""
    gr.Markdown(f"# {TITLE}")
    banner = weights_banner(served)
    gr.Markdown(_notice(served, with_provenance=banner is None), elem_classes="cxr-note")
    if banner:
        text, alarming = banner
        gr.Markdown(
            text,
            elem_classes="cxr-untrained" if alarming else "cxr-note",
            elem_id="untrained-banner" if alarming else "weights-banner",
        )


def _inputs_column() -> tuple[gr.File, gr.Dataset]:
    """The upload box and the example thumbnails."""
    upload = gr.File(
        label="Chest X-ray: PNG, JPEG or DICOM (.dcm)",
        file_count="single",
        type="filepath",
        height=96,
        elem_id="upload",
    )
    examples = gr.Dataset(
        label="Or try a radiograph from the NIH ChestX-ray14 data set",
        components=[gr.Image(type="filepath", render=False)],
        samples=[[str(path)] for path in THUMBNAILS],
        layout="gallery",
        type="index",
        elem_id="examples",
    )
    return upload, examples


def _results_column(choices: list[tuple[str, str]]) -> tuple[gr.Image, gr.Image, gr.Markdown, gr.Dropdown, gr.Slider]:
    """The radiograph and its heatmap side by side, the heatmap's caption, and the heatmap's controls."""
    with gr.Row(equal_height=True, elem_id="images"):
        with gr.Column(min_width=150):
            original = gr.Image(
                label="Radiograph", show_label=False, type="numpy", format=IMAGE_FORMAT, interactive=False,
                buttons=["fullscreen"], elem_id="original",
            )  # fmt: skip
        with gr.Column(min_width=150):
            overlay = gr.Image(
                label="Grad-CAM heatmap", show_label=False, type="numpy", format=IMAGE_FORMAT,
                interactive=False, buttons=["download", "fullscreen"], elem_id="overlay",
            )  # fmt: skip
    caption = gr.Markdown(EMPTY_CAPTION, elem_id="caption")
    with gr.Row(elem_id="controls"):
        label = gr.Dropdown(
            choices=choices, value=choices[0][1], label="Heatmap for", scale=3, min_width=200,
            elem_id="label-choice",
        )  # fmt: skip
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Heatmap opacity", scale=2, min_width=160)
    return original, overlay, caption, label, opacity


def _findings_column(n_labels: int) -> gr.Label:
    """Every label's probability, most probable first; a click on one shows its heatmap."""
    return gr.Label(
        label=f"Findings ({POSITIVE_MARK} = at or above threshold; click one for its heatmap)",
        num_top_classes=n_labels,
        show_heading=False,
        elem_id="findings",
    )


def _accordions(served: ServedModel) -> gr.JSON:
    """About the weights, their model card, and the API answer for the shown image (returned: events fill it)."""
    with gr.Accordion("About the model and these weights", open=False):
        gr.Markdown(about_markdown(served), elem_id="about")
    if served.model_card:
        with gr.Accordion("Model card", open=False):
            gr.Markdown(served.model_card)
    with gr.Accordion("API answer for this image (JSON)", open=False):
        return gr.JSON(label="API answer", elem_id="api-json")


class Handlers:
    """What the page's events and the API endpoints do, over one batching model."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.labels = list(served.config.labels)
        self.choices = [(display_name(label), label) for label in self.labels]
        self.model = BatchingPredictor(served.predictor, max_batch_size=MAX_BATCH_SIZE)

    def predict_file(self, path: str) -> Prediction:
        """Decode here, in the caller's thread (a bad file fails only its request), then share a forward."""
        try:
            image = load_image(path)
        except InvalidImageError as err:
            log.info("Refused an upload: %s", err)  # the message never quotes file contents or DICOM elements
            raise gr.Error(str(err), title=REFUSED, print_exception=False) from None  # logged above
        return self.model.predict(image)

    # Page events: their outputs are listed in _wire_page_events.

    def analyse_upload(self, path: str | None, opacity: float) -> tuple:
        """Outputs: result, refusal, original, overlay, findings, label, caption, answer."""
        if path is None:
            return _cleared(self.choices, EMPTY_CAPTION)
        try:
            prediction = self.predict_file(path)
        except gr.Error as err:
            # Clear the previous image's results: they must never sit next to another file's name.
            return _cleared(self.choices, f"**{REFUSED}.** {err.message}", refused=err.message)
        shown = top_label(prediction)
        return (
            prediction,
            None,
            _grayscale_uint8(prediction.image),
            prediction.overlay(shown, opacity=opacity),
            _marked_confidences(prediction),
            gr.update(choices=_ranked_choices(prediction), value=shown),
            _caption(prediction, shown),
            prediction_record(prediction, self.served),
        )

    @staticmethod
    def tell_refusal(message: str | None) -> None:
        """An error toast for a refused upload (Gradio titles every error toast "Error": the text names it)."""
        if message:
            raise gr.Error(f"{REFUSED}: {message}", title=REFUSED, print_exception=False)

    @staticmethod
    def redraw(prediction: Prediction | None, label: str, opacity: float) -> tuple[np.ndarray | None, str]:
        """Outputs: overlay, caption."""
        if prediction is None:
            return None, EXPIRED_CAPTION
        return prediction.overlay(label, opacity=opacity), _caption(prediction, label)

    def show_finding(self, prediction: Prediction | None, opacity: float, selected: gr.SelectData) -> tuple:
        """Outputs: overlay, caption, label (the clicked findings row's label)."""
        shown = {_finding_name(prediction, label): label for label in self.labels} if prediction else {}
        chosen = shown.get(selected.value, self.labels[0])
        return (*self.redraw(prediction, chosen, opacity), gr.update(value=chosen))

    # API endpoints: their docstrings are the API's descriptions.

    def predict(self, image: str) -> tuple[dict[str, Any], np.ndarray]:
        """All labels' probabilities, thresholds and positives, and the most probable label's heatmap."""
        prediction = self.predict_file(image)
        return prediction_record(prediction, self.served), prediction.overlay(top_label(prediction), DEFAULT_OPACITY)

    def cam(self, image: str, label: str, opacity: float = DEFAULT_OPACITY) -> tuple[dict[str, Any], np.ndarray]:
        """One label's heatmap over the image, with that label's probability, threshold and verdict."""
        prediction = self.predict_file(image)
        return cam_record(prediction, label, self.served), prediction.overlay(label, opacity)

    def describe_model(self) -> dict[str, Any]:
        """Labels, thresholds, provenance and recorded metrics of the served weights."""
        return model_info(self.served)


MODEL_EVENTS = dict(concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
RENDER_EVENTS = dict(concurrency_id="render", concurrency_limit=RENDER_CONCURRENCY, trigger_mode="always_last")


def _wire_page_events(page: Page, handlers: Handlers) -> None:
    """Upload, example clicks, label and opacity changes, finding clicks (none of them is an API endpoint)."""
    upload_outputs = [
        page.result,
        page.refusal,
        page.original,
        page.overlay,
        page.findings,
        page.label,
        page.caption,
        page.answer,
    ]
    page.upload.change(
        handlers.analyse_upload,
        inputs=[page.upload, page.opacity],
        outputs=upload_outputs,
        api_visibility="private",
        **MODEL_EVENTS,
    ).then(handlers.tell_refusal, inputs=[page.refusal], outputs=None, api_visibility="private", **RENDER_EVENTS)
    page.examples.click(
        lambda i: str(EXAMPLES[i]), inputs=[page.examples], outputs=[page.upload], api_visibility="private"
    )
    gr.on(
        [page.label.input, page.opacity.release],
        handlers.redraw,
        inputs=[page.result, page.label, page.opacity],
        outputs=[page.overlay, page.caption],
        api_visibility="private",
        **RENDER_EVENTS,
    )
    page.findings.select(
        handlers.show_finding,
        inputs=[page.result, page.opacity],
        outputs=[page.overlay, page.caption, page.label],
        api_visibility="private",
        **RENDER_EVENTS,
    )


def _add_api_endpoints(page: Page, handlers: Handlers) -> None:
    """/predict, /cam and /model_info: API-only (no trigger in the page); the page's components give their types."""
    gr.on([], handlers.predict, inputs=[page.upload], outputs=[page.answer, page.overlay], api_name="predict",
          **MODEL_EVENTS)  # fmt: skip
    gr.on([], handlers.cam, inputs=[page.upload, page.label, page.opacity], outputs=[page.answer, page.overlay],
          api_name="cam", **MODEL_EVENTS)  # fmt: skip
    gr.on([], handlers.describe_model, inputs=None, outputs=[page.answer], api_name="model_info", queue=False)


def _notice(served: ServedModel, with_provenance: bool) -> str:
    """The research-use notice; ``with_provenance`` adds what the weights were trained on."""
    return (
        "**Research demo — not a medical device;** not for diagnosis or treatment. "
        # Where a banner describes the weights, the notice does not say it twice (phones show little).
        + (f"{trained_on(served.config)} " if with_provenance else "")
        + "Heatmaps show where the model looked, not a finding's extent; "
        "each is scaled on its own, so read it with the label's probability."
    )


def _cleared(choices: list[tuple[str, str]], message: str, refused: str | None = None) -> tuple:
    """Outputs of the upload event with no result: empty panels and ``message`` under the images."""
    return None, refused, None, None, None, gr.update(choices=choices, value=choices[0][1]), message, None


def _grayscale_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _finding_name(prediction: Prediction, label: str) -> str:
    """A findings row, ``"Pleural thickening ▲ 50.3%"``: one decimal, so 50.3% ▲ never sits beside an unmarked 50%."""
    mark = f" {POSITIVE_MARK}" if label in prediction.positive else ""
    return f"{display_name(label)}{mark} {prediction.probability_by_label[label]:.1%}"


def _marked_confidences(prediction: Prediction) -> dict[str, float]:
    """``{row name: probability}`` for gr.Label (it sorts them), with labels at or above their threshold marked."""
    return {_finding_name(prediction, label): p for label, p in prediction.probability_by_label.items()}


def _ranked_choices(prediction: Prediction) -> list[tuple[str, str]]:
    """Dropdown entries, most probable first: ("Pleural thickening ▲ 73.2%", "Pleural_Thickening")."""
    ranked = sorted(prediction.labels, key=lambda label: -prediction.probability_by_label[label])
    return [(_finding_name(prediction, label), label) for label in ranked]


def _caption(prediction: Prediction, label: str) -> str:
    return f"**Heatmap of {prediction.caption(label)}**"


def main(argv: Sequence[str] | None = None) -> int:
    """Load the weights once, then serve the page until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        help="weights folder or Hub repo id (default: $CXR_WEIGHTS; else the project's Hub repo at its pinned "
        "revision, the bundled starter model, or demonstration weights, in that order)",
    )
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument(
        "--forget-after", type=int, default=120, metavar="SECONDS",
        help="delete uploads and rendered images from disk after this long (default 120)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0))),
        help="torch threads for the one forward pass at a time (default: $OMP_NUM_THREADS, else the usable cores)",
    )  # fmt: skip
    parser.add_argument(
        "--backend", choices=(AUTO, *BACKENDS), default=default_backend(),
        help="what runs the model (default: $CXR_BACKEND, else auto: the fastest this CPU supports that agrees "
        "with torch fp32 on a start-up probe; /model_info says which)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cxr").setLevel(logging.INFO)  # ours only: other libraries' request logs name file paths
    try:  # never fails: see cxr.sources for the order and the log for why
        served = load_served_model(args.weights, backend=args.backend)
    except (ValueError, RuntimeError) as err:  # the backend asked for cannot serve here: torch always can
        log.warning("%s Serving with torch.", err)
        served = load_served_model(args.weights, backend="torch")
    log.info("Weights SHA-256 %s; backend %s.", served.weights_sha256[:12], served.predictor.backend_name)
    demo = build_demo(served, forget_after_s=args.forget_after)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=MODEL_CONCURRENCY)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_FILE_BYTES,
        state_session_capacity=SESSIONS_KEPT,
        theme=gr.themes.Default(primary_hue="blue", neutral_hue="slate", font=["system-ui", "sans-serif"]),
        css=CSS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
