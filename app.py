"""Gradio Space: 14 chest X-ray findings with a Grad-CAM heatmap for each, from one forward pass.

Run ``python app.py --weights DIR`` (or with Hub access, ``python app.py``). The page and the API
(``/predict``, ``/cam``, ``/model_info``) are thin wiring over :mod:`cxr.serving` and :mod:`cxr.predictor`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from cxr.io import MAX_FILE_BYTES, InvalidImageError
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
MODEL_CONCURRENCY = 2  # model runs at once; each already uses every core through torch's own threads
QUEUE_SIZE = 32  # requests waiting beyond this are turned away at once instead of timing out
RENDER_CONCURRENCY = 8  # re-drawing an overlay from the kept maps is cheap and must not wait behind model runs
SESSION_TTL_S = 1800  # a result (decoded image + maps) stays in the server's memory at most this long
SESSIONS_KEPT = 200  # at most this many sessions' results in memory (about 5 MB each)
DEFAULT_OPACITY = 0.5
POSITIVE_MARK = "▲"
REFUSED = "Cannot read this file"

CSS = """
.cxr-note {border-left: 4px solid #1d4ed8; background: #eff6ff; padding: 10px 14px !important; border-radius: 6px;}
.cxr-untrained {border-left: 4px solid #b91c1c; background: #fef2f2; padding: 10px 14px !important;
  border-radius: 6px; color: #7f1d1d;}
#caption {font-size: 1.05rem; min-height: 2.2em;}
"""


def build_demo(served: ServedModel, forget_after_s: int = 120) -> gr.Blocks:
    """The page and its API endpoints for one loaded model.

    Args:
        served: the model and what is known about its weights.
        forget_after_s: uploads and rendered images are deleted from the server's disk this many
            seconds after they were written (checked every ``forget_after_s / 2`` seconds).
    """
    config = served.config
    labels = list(config.labels)
    sweep = max(1, forget_after_s // 2)
    # Served from examples/ as they are: copies in Gradio's cache would be swept away with the uploads.
    gr.set_static_paths(EXAMPLES)
    with gr.Blocks(title="Chest X-ray findings with Grad-CAM", delete_cache=(sweep, forget_after_s)) as demo:
        gr.Markdown("# Chest X-ray findings with Grad-CAM")
        gr.Markdown(
            "**Research demo — not a medical device.** Not for diagnosis or treatment decisions. "
            f"{trained_on(config)} Probabilities are the model's, for {len(labels)} ChestX-ray14 labels; "
            "a heatmap shows where the model looked for a label (Grad-CAM), not the extent of a finding, and is "
            "scaled per label, so always read it together with the label's probability.",
            elem_classes="cxr-note",
        )
        banner = weights_banner(served)
        if banner:
            text, alarming = banner
            gr.Markdown(
                text,
                elem_classes="cxr-untrained" if alarming else "cxr-note",
                elem_id="untrained-banner" if alarming else "weights-banner",
            )
        result = gr.State(None, time_to_live=SESSION_TTL_S)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                upload = gr.File(
                    label="Chest X-ray: PNG, JPEG or DICOM (.dcm)",
                    file_count="single",
                    type="filepath",
                    height=130,
                    elem_id="upload",
                )
                gr.Examples(
                    examples=[[str(path)] for path in EXAMPLES],
                    inputs=[upload],
                    label="Or try a radiograph from the NIH ChestX-ray14 data set",
                    example_labels=[path.stem for path in EXAMPLES],
                )
                findings = gr.Label(
                    label=f"Findings ({POSITIVE_MARK} = at or above threshold)",
                    num_top_classes=len(labels),
                    show_heading=False,
                    elem_id="findings",
                )
            with gr.Column(scale=7, min_width=480):
                with gr.Row(equal_height=True):
                    with gr.Column(min_width=220):
                        gr.Markdown("**Radiograph**")
                        original = gr.Image(
                            label="Radiograph", show_label=False, type="numpy", format="png", interactive=False,
                            buttons=["fullscreen"], elem_id="original",
                        )  # fmt: skip
                    with gr.Column(min_width=220):
                        gr.Markdown("**Grad-CAM heatmap**")
                        overlay = gr.Image(
                            label="Grad-CAM heatmap", show_label=False, type="numpy", format="png",
                            interactive=False, buttons=["download", "fullscreen"], elem_id="overlay",
                        )  # fmt: skip
                caption = gr.Markdown("Upload a chest X-ray to see findings.", elem_id="caption")
                with gr.Row():
                    label = gr.Dropdown(
                        choices=labels, value=labels[0], label="Heatmap for", scale=3, min_width=260,
                        elem_id="label-choice",
                    )  # fmt: skip
                    opacity = gr.Slider(
                        0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Heatmap opacity", scale=2, min_width=200
                    )
        with gr.Accordion("About the model and these weights", open=False):
            gr.Markdown(about_markdown(served))
        if served.model_card:
            with gr.Accordion("Model card", open=False):
                gr.Markdown(served.model_card)
        with gr.Accordion("API answer for this image (JSON)", open=False):
            answer = gr.JSON(label="API answer", elem_id="api-json")

        def analyse_upload(path: str | None, opacity_value: float):
            if path is None:
                return _cleared(labels, "Upload a chest X-ray to see findings.")
            try:
                prediction = _predict(served, path)
            except gr.Error as err:
                # Clear the previous image's results: they must never sit next to another file's name.
                gr.Warning(err.message, title=REFUSED)
                return _cleared(labels, f"**{REFUSED}.** {err.message}")
            shown = top_label(prediction)
            return (
                prediction,
                _grayscale_uint8(prediction.image),
                prediction.overlay(shown, opacity=opacity_value),
                _marked_confidences(prediction),
                gr.update(choices=_ranked_choices(prediction), value=shown),
                _caption(prediction, shown),
                prediction_record(prediction, served),
            )

        def redraw(prediction: Prediction | None, label_value: str, opacity_value: float):
            if prediction is None:
                return None, "The result for this image has expired or there is none yet: upload an image."
            return prediction.overlay(label_value, opacity=opacity_value), _caption(prediction, label_value)

        model_events = dict(concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)
        render_events = dict(concurrency_id="render", concurrency_limit=RENDER_CONCURRENCY, trigger_mode="always_last")
        upload.change(
            analyse_upload,
            inputs=[upload, opacity],
            outputs=[result, original, overlay, findings, label, caption, answer],
            api_visibility="private",
            **model_events,
        )
        gr.on(
            [label.input, opacity.release],
            redraw,
            inputs=[result, label, opacity],
            outputs=[overlay, caption],
            api_visibility="private",
            **render_events,
        )

        def predict(image: str) -> tuple[dict[str, Any], np.ndarray]:
            """All labels' probabilities, thresholds and positives, and the most probable label's heatmap."""
            prediction = _predict(served, image)
            return prediction_record(prediction, served), prediction.overlay(top_label(prediction), DEFAULT_OPACITY)

        def cam(image: str, label: str, opacity: float = DEFAULT_OPACITY) -> tuple[dict[str, Any], np.ndarray]:
            """One label's heatmap over the image, with that label's probability, threshold and verdict."""
            prediction = _predict(served, image)
            return cam_record(prediction, label, served), prediction.overlay(label, opacity)

        def describe_model() -> dict[str, Any]:
            """Labels, thresholds, provenance and recorded metrics of the served weights."""
            return model_info(served)

        # API-only endpoints (no trigger in the page); they reuse the page's components for typing.
        gr.on([], predict, inputs=[upload], outputs=[answer, overlay], api_name="predict", **model_events)
        gr.on([], cam, inputs=[upload, label, opacity], outputs=[answer, overlay], api_name="cam", **model_events)
        gr.on([], describe_model, inputs=None, outputs=[answer], api_name="model_info", queue=False)
    return demo


def _predict(served: ServedModel, path: str) -> Prediction:
    """Run the model on an uploaded file; bad input becomes a message in the page or API answer."""
    try:
        return served.predictor.predict(path)
    except InvalidImageError as err:
        log.info("Refused an upload: %s", err)  # the message never quotes file contents or DICOM elements
        raise gr.Error(str(err), title=REFUSED, print_exception=False) from None  # logged above


def _cleared(labels: list[str], message: str) -> tuple:
    """Outputs of the upload event with no result: empty panels and ``message`` under the images."""
    return None, None, None, None, gr.update(choices=labels, value=labels[0]), message, None


def _grayscale_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _marked_confidences(prediction: Prediction) -> dict[str, float]:
    """``{label: probability}`` for gr.Label, with labels at or above their threshold marked."""
    positive = set(prediction.positive)
    return {
        (f"{label} {POSITIVE_MARK}" if label in positive else label): p
        for label, p in prediction.probability_by_label.items()
    }


def _ranked_choices(prediction: Prediction) -> list[tuple[str, str]]:
    """Dropdown entries, most probable first: ("Effusion — 73.2% ▲", "Effusion")."""
    positive = set(prediction.positive)
    ranked = sorted(prediction.probability_by_label.items(), key=lambda item: -item[1])
    return [(f"{label} — {p:.1%}" + (f" {POSITIVE_MARK}" if label in positive else ""), label) for label, p in ranked]


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cxr").setLevel(logging.INFO)  # ours only: other libraries' request logs name file paths
    served = load_served_model(args.weights)  # never fails: see cxr.sources for the order and the log for why
    log.info("Weights SHA-256 %s.", served.weights_sha256[:12])
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
