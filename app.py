"""Gradio Space: 14 chest X-ray findings with a Grad-CAM heatmap for each, from one forward pass.

Run ``python app.py --weights DIR`` (or with Hub access, ``python app.py``). The page and the API
(``/predict``, ``/cam``, ``/model_info``, also MCP tools with ``--mcp``; on by default on a Space) are thin
wiring over :mod:`cxr.serving` and :mod:`cxr.predictor`; on ZeroGPU hardware :mod:`cxr.zerogpu` runs the model.
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

from cxr import zerogpu
from cxr.backends import AUTO, BACKENDS, default_backend
from cxr.io import MAX_FILE_BYTES, InvalidImageError, decode
from cxr.labels import display_name
from cxr.overlay import MIN_SIDE
from cxr.page_style import CSS, page_script
from cxr.page_text import (
    AT_CHANCE_HEADING,
    FINDINGS_HEADING,
    caption,
    finding_rows,
    heatmap_alt,
    heatmap_choices,
    row_name,
)
from cxr.predictor import Prediction
from cxr.reliability import AT_CHANCE, label_evidence
from cxr.serving import (
    ServedModel,
    about_markdown,
    cam_record,
    first_heatmap,
    load_served_model,
    model_info,
    prediction_record,
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
# Overlays are drawn once at the size the page shows them (long side; the page's image panes are narrower), not
# at the radiograph's resolution: a quarter of the pixels to draw, encode, send and download.
OVERLAY_SIDE = MIN_SIDE
REFUSED = "Cannot read this file"
TITLE = "Chest X-ray findings with Grad-CAM"
EMPTY_CAPTION = "Upload a chest X-ray to see findings."
SHOW_ANYWAY = "Show the model's raw output anyway (not findings: the input check refused this image)"
EXPIRED_CAPTION = "The result for this image has expired or there is none yet: upload an image."


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
    show_anyway: gr.Checkbox  # shown for a refused image: its findings and heatmap on request
    label: gr.Dropdown
    opacity: gr.Slider
    findings: gr.Label
    at_chance: gr.Label  # the labels the weights cannot tell from chance, greyed below the others
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
                original, overlay, caption, show_anyway, label, opacity = _results_column(handlers.choices)
            with gr.Column(scale=4, min_width=260):
                findings, at_chance = _findings_column(handlers)
        answer = _accordions(served)
        page = Page(result, refusal, upload, examples, original, overlay, caption, show_anyway, label, opacity,
                    findings, at_chance, answer)  # fmt: skip
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


def _results_column(choices: list[tuple[str, str]]) -> tuple:
    """The radiograph and its heatmap side by side, the heatmap's caption (or the input check's refusal), a
    "show anyway" box for refused images, and the heatmap's controls."""
    with gr.Row(equal_height=True, elem_id="images"):
        with gr.Column(min_width=150):
            original = gr.Image(
                label="Radiograph", show_label=False, type="numpy", format=IMAGE_FORMAT, interactive=False,
                buttons=["fullscreen"], elem_id="original", alt_text="Uploaded radiograph",
            )  # fmt: skip
        with gr.Column(min_width=150):
            overlay = gr.Image(
                label="Grad-CAM heatmap", show_label=False, type="numpy", format=IMAGE_FORMAT,
                interactive=False, buttons=["download", "fullscreen"], elem_id="overlay",
            )  # fmt: skip
    caption = gr.Markdown(EMPTY_CAPTION, elem_id="caption")
    with gr.Row(elem_id="show-anyway-row"):  # a row: the phone layout orders the column's direct children
        show_anyway = gr.Checkbox(False, label=SHOW_ANYWAY, visible=False, elem_id="show-anyway")
    with gr.Row(elem_id="controls"):
        label = gr.Dropdown(
            choices=choices, value=choices[0][1], label="Heatmap for", scale=3, min_width=200,
            elem_id="label-choice",
        )  # fmt: skip
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Heatmap opacity", scale=2, min_width=160)
    return original, overlay, caption, show_anyway, label, opacity


def _findings_column(handlers: Handlers) -> tuple[gr.Label, gr.Label]:
    """Every label's probability, most probable first, the at-chance ones in a greyed list below the others;
    a click on one shows its heatmap. A list with no label for the served weights is not shown."""
    reliable = len(handlers.labels) - len(handlers.at_chance)
    findings = gr.Label(
        label=FINDINGS_HEADING, num_top_classes=reliable, show_heading=False, visible=reliable > 0, elem_id="findings"
    )
    at_chance = gr.Label(
        label=AT_CHANCE_HEADING,
        num_top_classes=len(handlers.at_chance),
        show_heading=False,
        visible=bool(handlers.at_chance),
        elem_id="at-chance",
    )
    return findings, at_chance


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
    """What the page's events and the API endpoints do, over one model front (batching, or ZeroGPU calls)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.labels = list(served.config.labels)
        self.choices = [(display_name(label), label) for label in self.labels]
        self.evidence = label_evidence(served.config)  # each label's test AUROC and interval, if recorded
        self.at_chance = [label for label in self.labels if self.evidence[label].verdict == AT_CHANCE]
        self.model = zerogpu.serving_front(served.predictor, max_batch_size=MAX_BATCH_SIZE)

    def predict_file(self, path: str) -> Prediction:
        """Decode here, in the caller's thread (a bad file fails only its request), then share a forward."""
        try:
            image = decode(path)  # the image and what the upload said (colour, DICOM modality)
        except InvalidImageError as err:
            log.info("Refused an upload: %s", err)  # the message never quotes file contents or DICOM elements
            raise gr.Error(str(err), title=REFUSED, print_exception=False) from None  # logged above
        return self.model.predict(image)

    # Page events: their outputs are listed in _wire_page_events.

    def analyse_upload(self, path: str | None, opacity: float) -> tuple:
        """Outputs: result, refusal, original, overlay, findings, at_chance, label, caption, answer, show_anyway.

        An image the input check refused shows its message in place of the findings and heatmap.
        """
        if path is None:
            return _cleared(self.choices, EMPTY_CAPTION)
        try:
            prediction = self.predict_file(path)
        except gr.Error as err:
            # Clear the previous image's results: they must never sit next to another file's name.
            return _cleared(self.choices, f"**{REFUSED}.** {err.message}", refused=err.message)
        shown, why_not = first_heatmap(prediction)
        refused = not prediction.input_check.accepted
        return (
            prediction,
            None,
            _grayscale_uint8(prediction.image),
            None if refused else self.overlay(prediction, shown, opacity),
            *((None, None) if refused else finding_rows(prediction, self.evidence)),
            gr.update(choices=heatmap_choices(prediction, self.evidence), value=shown),
            caption(prediction, shown, self.evidence[shown], why_not),
            prediction_record(prediction, self.served),
            gr.update(value=False, visible=refused),
        )

    def show_anyway(self, prediction: Prediction | None, label: str, opacity: float, anyway: bool) -> tuple:
        """Outputs: overlay, findings, at_chance, caption: a refused image's raw output when asked for."""
        if prediction is None:
            return None, None, None, EXPIRED_CAPTION
        if not prediction.input_check.accepted and not anyway:
            return None, None, None, caption(prediction, label, self.evidence[label])
        return (
            self.overlay(prediction, label, opacity),
            *finding_rows(prediction, self.evidence),
            caption(prediction, label, self.evidence[label], show_anyway=anyway),
        )

    @staticmethod
    def tell_refusal(message: str | None) -> None:
        """An error toast for a refused upload (Gradio titles every error toast "Error": the text names it)."""
        if message:
            raise gr.Error(f"{REFUSED}: {message}", title=REFUSED, print_exception=False)

    @staticmethod
    def overlay(prediction: Prediction, label: str, opacity: float) -> dict[str, Any]:
        """The heatmap's image and its alt text, for the page's overlay component."""
        image = prediction.overlay(label, opacity=opacity, side=OVERLAY_SIDE)
        return gr.update(value=image, alt_text=heatmap_alt(prediction, label))

    def redraw(self, prediction: Prediction | None, label: str, opacity: float, anyway: bool = False) -> tuple:
        """Outputs: overlay, caption (a refused image's heatmap only when "show anyway" is ticked)."""
        if prediction is None:
            return None, EXPIRED_CAPTION
        text = caption(prediction, label, self.evidence[label], show_anyway=anyway)
        if not prediction.input_check.accepted and not anyway:
            return None, text
        return self.overlay(prediction, label, opacity), text

    def show_finding(
        self, prediction: Prediction | None, opacity: float, anyway: bool, selected: gr.SelectData
    ) -> tuple:
        """Outputs: overlay, caption, label (the label of the clicked row, in either findings list)."""
        rows = {row_name(prediction, label, self.evidence): label for label in self.labels} if prediction else {}
        chosen = rows.get(selected.value, self.labels[0])
        return (*self.redraw(prediction, chosen, opacity, anyway), gr.update(value=chosen))

    # API endpoints: their docstrings are the API's descriptions and the MCP tools' (Gradio reads the summary,
    # Args and Returns). The functions' names are the MCP tools' names.

    def predict(self, image: str) -> tuple[dict[str, Any], np.ndarray]:
        """Read a frontal chest radiograph and score 14 findings (the NIH ChestX-ray14 labels), with a heatmap.
        A research demo, not a medical device: not for diagnosis or treatment.

        Args:
            image: a frontal (PA or AP) chest radiograph: a PNG, JPEG or DICOM (.dcm) file.

        Returns:
            JSON: each label's probability and threshold, `positive` labels, labels at chance, the input check
            a JPEG image, 512 px on its long side: the heatmap of `overlay_label`, the most probable label above
            chance with a non-empty map
        """
        prediction = self.predict_file(image)
        record = prediction_record(prediction, self.served)
        return record, prediction.overlay(record["overlay_label"], DEFAULT_OPACITY, side=OVERLAY_SIDE)

    def cam(self, image: str, label: str, opacity: float = DEFAULT_OPACITY) -> tuple[dict[str, Any], np.ndarray]:
        """Show where the model looked for one finding on a frontal chest radiograph (a Grad-CAM heatmap).
        A research demo, not a medical device: not for diagnosis or treatment.

        Args:
            image: a frontal (PA or AP) chest radiograph: a PNG, JPEG or DICOM (.dcm) file.
            label: the finding, a label name such as "Effusion" or "Cardiomegaly" (model_info lists them).
            opacity: the heatmap's opacity over the radiograph, from 0 to 1.

        Returns:
            JSON: the label's probability, threshold, verdict and caption
            a JPEG image, 512 px on its long side: the label's heatmap over the radiograph (where the model looked,
            not the finding's extent)
        """
        prediction = self.predict_file(image)
        return cam_record(prediction, label, self.served), prediction.overlay(label, opacity, side=OVERLAY_SIDE)

    def model_info(self) -> dict[str, Any]:
        """Describe the served chest X-ray model: its labels, thresholds, provenance and recorded test metrics.
        A research demo, not a medical device.

        Returns:
            JSON: labels, thresholds, weights source, revision and SHA-256, training data, evaluation
        """
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
        page.at_chance,
        page.label,
        page.caption,
        page.answer,
        page.show_anyway,
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
    page.show_anyway.input(
        handlers.show_anyway,
        inputs=[page.result, page.label, page.opacity, page.show_anyway],
        outputs=[page.overlay, page.findings, page.at_chance, page.caption],
        api_visibility="private",
        **RENDER_EVENTS,
    )
    gr.on(
        [page.label.input, page.opacity.release],
        handlers.redraw,
        inputs=[page.result, page.label, page.opacity, page.show_anyway],
        outputs=[page.overlay, page.caption],
        api_visibility="private",
        **RENDER_EVENTS,
    )
    gr.on(
        [page.findings.select, page.at_chance.select],
        handlers.show_finding,
        inputs=[page.result, page.opacity, page.show_anyway],
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
    gr.on([], handlers.model_info, inputs=None, outputs=[page.answer], api_name="model_info", queue=False)


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
    hide = gr.update(value=False, visible=False)
    return None, refused, None, None, None, None, gr.update(choices=choices, value=choices[0][1]), message, None, hide


def _grayscale_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


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
        "--mcp", action="store_true", default=None,
        help="also serve the API as an MCP server at /gradio_api/mcp/ (default: on in a Hugging Face Space, "
        "else $GRADIO_MCP_SERVER)",
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
    device = zerogpu.prepare()  # ZeroGPU: the model goes to cuda now, before anything else touches CUDA
    try:  # never fails: see cxr.sources for the order and the log for why
        served = load_served_model(args.weights, backend=args.backend, **device)
    except (ValueError, RuntimeError) as err:  # the backend asked for cannot serve here: torch always can
        log.warning("%s Serving with torch.", err)
        served = load_served_model(args.weights, backend="torch", **device)
    log.info("Weights SHA-256 %s; backend %s.", served.weights_sha256[:12], served.predictor.backend_name)
    demo = build_demo(served, forget_after_s=args.forget_after)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=MODEL_CONCURRENCY)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_FILE_BYTES,
        mcp_server=args.mcp or (True if gr.utils.get_space() else None),  # None: Gradio reads $GRADIO_MCP_SERVER
        state_session_capacity=SESSIONS_KEPT,
        theme=gr.themes.Default(primary_hue="blue", neutral_hue="slate", font=["system-ui", "sans-serif"]),
        css=CSS,
        js=page_script(
            [f"Try example {n}: NIH ChestX-ray14 radiograph {path.stem}" for n, path in enumerate(EXAMPLES, 1)]
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
