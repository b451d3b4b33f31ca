"""Cold start of the Space's app: process start to the page answering, and to the first ``/predict`` answer.

    python -m bench.cold_start [--rounds 2] [--weights DIR] [--threads N]

Each round starts ``python app.py`` three ways, interleaved so that machine noise hits them alike:
``CXR_BACKEND=torch``; ``auto`` with an empty export cache (a fresh Space: the model is exported to OpenVINO
and probed); ``auto`` again with the cache that start left (a restart). Reported per way: seconds until the
page answers, seconds until the first ``/predict`` of one real 1024 px NIH PNG returns (through
gradio_client, started right after), and the server's resident memory then. Without ``--weights`` the app
resolves its weights as on a Space (offline here, so the bundled starter). Container start and the Hub
download of a Space's weights are not in these numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from gradio_client import Client, handle_file

from bench.load import resident_mb
from bench.predict_speed import _cpu_name
from tests.live_server import running_app

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "00000001_000.png"


def one_start(weights: Path | None, tmp: Path, cache: Path, threads: int, backend: str) -> tuple[float, float, float]:
    """(s to the page, s to the first /predict answer, resident MiB) of one start of app.py."""
    env = {"OMP_NUM_THREADS": str(threads), "CXR_BACKEND": backend, "CXR_CACHE": str(cache)}
    start = time.monotonic()
    with running_app(weights, tmp, **env) as app:
        page = app.started - start
        client = Client(app.url, verbose=False, download_files=tmp / "downloads", analytics_enabled=False)
        client.predict(handle_file(str(IMAGE)), api_name="/predict")
        first = time.monotonic() - start
        return page, first, resident_mb(app.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None, help="default: resolved as on a Space")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="the server's torch threads")
    args = parser.parse_args()
    ways = ("torch", "auto, empty export cache", "auto, export cached")
    results: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory(prefix="cxr-cold-") as tmp:
        for r in range(args.rounds):
            cache = Path(tmp) / f"cache-{r}"  # empty for the first auto start of this round, filled by it
            for way in ways:
                backend = "torch" if way == "torch" else "auto"
                results[way].append(one_start(args.weights, Path(tmp) / f"{r}-{way[:4]}", cache, args.threads, backend))
    print(f"\n{_cpu_name()}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}; ")
    print(f"weights {args.weights or 'resolved as on a Space'}; median of {args.rounds} rounds\n")
    print("| app start | to the page | to the first /predict | resident memory |\n| --- | ---: | ---: | ---: |")
    for way, values in results.items():
        page, first, rss = (statistics.median(v[i] for v in values) for i in range(3))
        print(f"| {way} | {page:.1f} s | {first:.1f} s | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
