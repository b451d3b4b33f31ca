"""Latency of the Space's API against the library on the same image, and where a ``/predict`` call's time goes.

    python -m bench.app_latency --weights DIR [--repeats 12] [--profile] [--backend auto]

Starts ``app.py`` on 127.0.0.1 with the weights (``tests/live_server.running_app``, torch using every
core), then times on one real 1024 px NIH PNG, one call at a time: ``Predictor.predict`` in this process,
``/predict`` and ``/cam`` through gradio_client, ``/predict`` over plain HTTP (Gradio's REST API, as curl or
the JS client call it), ``/model_info`` both ways (the floor each client adds to any call), and one overlay
redraw (what a label switch costs). The ratio ``/predict`` p50 / in-process p50 is the number to watch.

``--profile`` runs the server with Gradio's own tracer (``GRADIO_PROFILING=1``) and splits a ``/predict``
call into: upload, queue wait, preprocess (moving the upload into the cache), the function (split here,
in-process, into decode, model and overlay rendering), postprocess (encoding the overlay and writing it to
the cache), the overlay's download, and the rest (event protocol, HTTP round trips, JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch
from gradio_client import Client, handle_file

from cxr.backends import AUTO, BACKENDS
from cxr.io import load_image
from cxr.predictor import Predictor
from cxr.serving import first_heatmap
from tests.live_server import running_app

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "00000001_000.png"


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn``."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def p50_ms(values: list[float], scale: float = 1000.0) -> float:
    return statistics.median(values) * scale


def rest_call(http: httpx.Client, url: str, api_name: str, data: list, download: bool = False) -> None:
    """One call through Gradio's REST API (``POST /gradio_api/call/NAME``, then its event stream), as curl, the
    JS client or any HTTP client makes it; with ``download``, the first file in the answer is fetched too."""
    base = f"{url}gradio_api/call/{api_name}"
    event = http.post(base, json={"data": data}).raise_for_status().json()["event_id"]
    stream = http.get(f"{base}/{event}").raise_for_status().text
    if "event: complete" not in stream:
        raise RuntimeError(f"{api_name} did not complete: {stream[:300]}")
    if download:
        answer = json.loads(stream.split("event: complete\ndata: ", 1)[1].splitlines()[0])
        http.get(next(item["url"] for item in answer if isinstance(item, dict) and "url" in item)).raise_for_status()


def rest_predict(http: httpx.Client, url: str, image: Path) -> None:
    """Upload ``image``, call ``/predict`` and download the overlay, over plain HTTP."""
    with image.open("rb") as f:
        path = http.post(f"{url}gradio_api/upload", files={"files": f}).raise_for_status().json()[0]
    rest_call(http, url, "predict", [{"path": path, "meta": {"_type": "gradio.FileData"}}], download=True)


def profile_rows(url: str, file: dict, predictor: Predictor, repeats: int) -> list[tuple[str, float]]:
    """(phase, p50 ms) of ``/predict`` calls, from the server's traces and this process's own clocks."""
    raw = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    api = f"{url}gradio_api/profiling"
    httpx.post(f"{api}/clear", timeout=30).raise_for_status()
    calls, downloads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        _, overlay = raw.predict(file, api_name="/predict")
        calls.append(time.perf_counter() - start)
        start = time.perf_counter()
        httpx.get(overlay["url"], timeout=30).raise_for_status()
        downloads.append(time.perf_counter() - start)
    server = [t for t in httpx.get(f"{api}/traces", timeout=30).json() if t["fn_name"] == "predict"]
    upload = httpx.get(f"{api}/summary", timeout=30).json()["upload"]["p50"]

    def phase(name: str) -> float:
        return statistics.median(t[f"{name}_ms"] for t in server)

    image = load_image(IMAGE)
    prediction = predictor.predict_batch([image])[0]
    rows = [
        ("upload (server side)", upload),
        ("queue wait", phase("queue_wait")),
        ("preprocess: upload into the cache", phase("preprocess")),
        ("function", phase("fn_call")),
        ("  in-process: decode", p50_ms(timed(lambda: load_image(IMAGE), repeats))),
        ("  in-process: model (predict_batch of 1)", p50_ms(timed(lambda: predictor.predict_batch([image]), repeats))),
        (
            "  in-process: overlay rendering",
            p50_ms(timed(lambda: prediction.overlay(first_heatmap(prediction)[0]), repeats)),
        ),
        ("postprocess: overlay encoding + cache write", phase("postprocess")),
        ("download of the overlay", p50_ms(downloads)),
    ]
    server_side = upload + phase("queue_wait") + phase("total")
    rows.append(("rest: event protocol, HTTP, JSON", p50_ms(calls) - server_side))
    rows.append(("whole call, client side, with the download", p50_ms(calls) + p50_ms(downloads)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="weights folder the server and this process load")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--profile", action="store_true", help="split /predict into phases (Gradio's tracer)")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch threads, server and here (default: cores)",
    )
    parser.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO, help="the server's (default auto)")
    args = parser.parse_args()

    # The same torch threads on both sides of a ratio (live_server's test default for the server is 1). The
    # in-process reference is torch fp32, what the server ran before it had backends.
    torch.set_num_threads(args.threads)
    env = {"OMP_NUM_THREADS": str(args.threads), "CXR_BACKEND": args.backend}
    env |= {"GRADIO_PROFILING": "1"} if args.profile else {}
    predictor = Predictor.from_pretrained(args.weights, device="cpu")
    served = Predictor.from_pretrained(args.weights, device="cpu", backend=args.backend)  # the server's, for --profile
    print(f"server backend: {served.backend_name}; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="cxr-latency-") as tmp, running_app(args.weights, Path(tmp), **env) as app:
        client = Client(app.url, verbose=False, download_files=Path(tmp) / "downloads", analytics_enabled=False)
        file = handle_file(str(IMAGE))
        client.predict(file, api_name="/predict")  # warm-up: first-call allocations on both sides
        prediction = predictor.predict(IMAGE)
        # Interleaved, so that a busy spell of the shared machine hits both sides alike.
        http = httpx.Client(timeout=60)
        rest_predict(http, app.url, IMAGE)  # warm-up
        local, remote, cam, rest, info, rest_info = [], [], [], [], [], []
        for _ in range(args.repeats):
            local += timed(lambda: predictor.predict(IMAGE), 1)
            remote += timed(lambda: client.predict(file, api_name="/predict"), 1)
            cam += timed(lambda: client.predict(file, "Effusion", 0.5, api_name="/cam"), 1)
            rest += timed(lambda: rest_predict(http, app.url, IMAGE), 1)
            info += timed(lambda: client.predict(api_name="/model_info"), 1)
            rest_info += timed(lambda: rest_call(http, app.url, "model_info", []), 1)
        redraw = timed(lambda: prediction.overlay("Effusion", 0.5), args.repeats)
        base = p50_ms(local)
        print(f"| what (p50 of {args.repeats}) | ms | × in-process predict |\n| --- | ---: | ---: |")
        for name, ms in [
            ("in-process `Predictor.predict`", base),
            ("`/predict` through gradio_client", p50_ms(remote)),
            ("`/cam` through gradio_client", p50_ms(cam)),
            ("`/predict` over HTTP (upload, call, event stream, overlay download)", p50_ms(rest)),
            ("`/model_info` through gradio_client (the client's own floor)", p50_ms(info)),
            ("`/model_info` over HTTP", p50_ms(rest_info)),
            ("in-process overlay redraw (label switch)", p50_ms(redraw)),
        ]:
            print(f"| {name} | {ms:.0f} | {ms / base:.2f} |", flush=True)
        rows = profile_rows(app.url, file, served, args.repeats) if args.profile else []
    if rows:
        print("\n| `/predict`, phase (p50) | ms |\n| --- | ---: |")
        for name, ms in rows:
            print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
