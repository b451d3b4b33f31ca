"""Load test of the Space: N concurrent gradio_client users against app.py on 127.0.0.1.

    python -m bench.load --weights DIR [--users 1 4 16] [--requests 500] [--seconds 900]

Starts the real server (torch using every core), then for each number of ``--users``: warms it up and
lets that many clients call ``/predict`` (every 5th call ``/cam``) on the real NIH examples until
``--requests`` calls are done or ``--seconds`` have passed; every loop stops by itself. Prints, per number
of users, throughput, p50/p95 latency, failures and the server's resident memory before and after, and
the throughput as a ratio of what ``Predictor.predict_batch`` sustains alone in this process on the same
images (4 per forward), measured just before and after each load while the server is idle. ``tests/test_load.py`` runs a
short version.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from gradio_client import Client, handle_file

from cxr.backends import AUTO, BACKENDS
from cxr.io import load_image
from cxr.predictor import Predictor
from tests.live_server import running_app

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "examples").glob("*.png"))


@dataclass
class LoadResult:
    users: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_s) + len(self.failures)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def resident_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_load(url: str, pid: int, users: int, max_requests: int, max_seconds: float, warmup: int = 8) -> LoadResult:
    """Drive the server at ``url`` with ``users`` clients; bounded by request count and time.

    A concurrent warm-up of ``warmup`` requests per user comes first, so that the server's threads
    and allocator have reached their working size before the "before" memory reading.
    """
    files = [handle_file(str(path)) for path in IMAGES]
    _drive(url, files, users, warmup * users, max_seconds, LoadResult(users=users))
    result = LoadResult(users=users, rss_before_mb=resident_mb(pid))
    start = time.perf_counter()
    _drive(url, files, users, max_requests, max_seconds, result)
    result.wall_s = time.perf_counter() - start
    result.rss_after_mb = resident_mb(pid)
    return result


def _drive(url: str, files: list, users: int, max_requests: int, max_seconds: float, result: LoadResult) -> None:
    """``users`` threads with a client each, sharing ``max_requests`` tickets until the deadline."""
    tickets = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def user() -> None:
        client = Client(url, verbose=False, analytics_enabled=False)
        while time.monotonic() < deadline:
            with lock:
                n = next(tickets)
            if n >= max_requests:
                return
            image = files[n % len(files)]
            start = time.perf_counter()
            try:
                if n % 5 == 4:
                    client.predict(image, "Effusion", 0.5, api_name="/cam")
                else:
                    client.predict(image, api_name="/predict")
            except Exception as err:  # a load test counts every kind of failure
                result.failures.append(f"{type(err).__name__}: {err}")
                continue
            result.latencies_s.append(time.perf_counter() - start)

    with ThreadPoolExecutor(users) as pool:
        for future in [pool.submit(user) for _ in range(users)]:
            future.result()


def predict_batch_rate(predictor: Predictor, repeats: int = 2, batch_size: int = 4) -> float:
    """Images per second of ``Predictor.predict_batch`` on the examples (decoded each time, as the server does)."""
    paths = [IMAGES[i % len(IMAGES)] for i in range(batch_size)]
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict_batch([load_image(path) for path in paths], batch_size)
    return repeats * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="weights folder the server loads")
    parser.add_argument("--users", type=int, nargs="+", default=[4])
    parser.add_argument("--requests", type=int, default=500, help="per number of users")
    parser.add_argument("--seconds", type=float, default=900, help="per number of users")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up requests per user")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch threads, server and here (default: cores)",
    )
    parser.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO, help="the server's and the reference's")
    args = parser.parse_args()
    # The same torch threads and backend on both sides of a ratio (live_server's test default is 1 thread, torch).
    torch.set_num_threads(args.threads)
    env = {"OMP_NUM_THREADS": str(args.threads), "CXR_BACKEND": args.backend}
    predictor = Predictor.from_pretrained(args.weights, device="cpu", backend=args.backend)
    print(f"backend: {predictor.backend_name}; load {os.getloadavg()}")
    predict_batch_rate(predictor, repeats=1)  # warm-up
    print("| users | requests (failures) | throughput | `predict_batch` alone | ratio | p50 / p95 | server RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    with tempfile.TemporaryDirectory(prefix="cxr-load-") as tmp, running_app(args.weights, Path(tmp), **env) as app:
        for users in args.users:
            # The reference runs just before and after each load, while the server is idle: the shared machine's
            # busy spells then weigh on both sides of the ratio alike.
            before = predict_batch_rate(predictor)
            r = run_load(app.url, app.pid, users, args.requests, args.seconds, args.warmup)
            reference = (before + predict_batch_rate(predictor)) / 2
            rate = len(r.latencies_s) / r.wall_s
            print(
                f"| {users} | {r.requests} ({len(r.failures)}) | {rate:.2f}/s | {reference:.2f}/s | "
                f"{rate / reference:.2f} | {statistics.median(r.latencies_s):.2f} s / {r.percentile(0.95):.2f} s | "
                f"{r.rss_before_mb:.0f} → {r.rss_after_mb:.0f} MB |",
                flush=True,
            )
            for failure in r.failures[:10]:
                print("failure:", failure)


if __name__ == "__main__":
    main()
