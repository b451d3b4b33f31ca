"""Load test of the Space: N concurrent gradio_client users against app.py on 127.0.0.1, and the two ratios of
issue 18's request goals.

    python -m bench.load --weights DIR [--users 1 4 16] [--requests 500] [--seconds 900] [--backend auto]

Starts the real server (torch using every core), then for each number of ``--users``: warms it up and
lets that many clients call ``/predict`` (every 5th call ``/cam``) on the real NIH examples until
``--requests`` calls are done or ``--seconds`` have passed; every loop stops by itself. Prints, per number
of users, throughput, p50/p95 latency, failures and the server's resident memory before and after, and
the throughput as a ratio of what ``Predictor.predict_batch`` sustains alone in this process on the same
images (4 per forward), measured just before and after each load while the server is idle. ``tests/test_load.py`` runs a
short version.

Then the two ratios, each measured in this one run: ``/predict`` p50 (one call at a time, the server's backend)
over the p50 of an in-process torch fp32 ``Predictor.predict`` of the same 1024 px PNG (the two interleaved), and
the throughput of 4 concurrent users over that of 1 (both from the table; the goals: ≤ 0.5 and ≥ 0.8).
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


def serial_p50s(url: str, predictor: Predictor, repeats: int) -> tuple[float, float]:
    """(p50 s of ``/predict`` through gradio_client, p50 s of ``predictor.predict``) on one example, interleaved so a
    busy spell of the shared machine weighs on both alike."""
    client = Client(url, verbose=False, analytics_enabled=False)
    file, remote, local = handle_file(str(IMAGES[0])), [], []
    client.predict(file, api_name="/predict")  # warm-up of this client's connection
    for _ in range(repeats):
        start = time.perf_counter()
        client.predict(file, api_name="/predict")
        remote.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.predict(IMAGES[0])
        local.append(time.perf_counter() - start)
    return statistics.median(remote), statistics.median(local)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="weights folder the server loads")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4], help="must include 1 and 4 for the ratio")
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
    parser.add_argument("--serial", type=int, default=15, help="interleaved /predict and in-process calls for the p50s")
    args = parser.parse_args()
    # The same torch threads and backend on both sides of a ratio (live_server's test default is 1 thread, torch).
    torch.set_num_threads(args.threads)
    env = {"OMP_NUM_THREADS": str(args.threads), "CXR_BACKEND": args.backend}
    predictor = Predictor.from_pretrained(args.weights, device="cpu", backend=args.backend)
    reference = Predictor.from_pretrained(args.weights, device="cpu")  # torch fp32: the goal's yardstick
    print(f"backend: {predictor.backend_name}; {args.threads} threads; load {os.getloadavg()}")
    predict_batch_rate(predictor, repeats=1)  # warm-up
    print("| users | requests (failures) | throughput | `predict_batch` alone | ratio | p50 / p95 | server RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="cxr-load-") as tmp, running_app(args.weights, Path(tmp), **env) as app:
        remote_p50, local_p50 = serial_p50s(app.url, reference, args.serial)
        for users in args.users:
            # The reference runs just before and after each load, while the server is idle: the shared machine's
            # busy spells then weigh on both sides of the ratio alike.
            before = predict_batch_rate(predictor)
            r = run_load(app.url, app.pid, users, args.requests, args.seconds, args.warmup)
            reference = (before + predict_batch_rate(predictor)) / 2
            rate = rates[users] = len(r.latencies_s) / r.wall_s
            print(
                f"| {users} | {r.requests} ({len(r.failures)}) | {rate:.2f}/s | {reference:.2f}/s | "
                f"{rate / reference:.2f} | {statistics.median(r.latencies_s):.2f} s / {r.percentile(0.95):.2f} s | "
                f"{r.rss_before_mb:.0f} → {r.rss_after_mb:.0f} MB |",
                flush=True,
            )
            for failure in r.failures[:10]:
                print("failure:", failure)
    print(f"\n/predict p50 {remote_p50 * 1000:.0f} ms; in-process torch fp32 predict p50 {local_p50 * 1000:.0f} ms")
    print(f"ratio /predict p50 / in-process torch fp32 predict p50: {remote_p50 / local_p50:.2f} (goal <= 0.5)")
    if 1 in rates and 4 in rates:
        print(f"ratio 4 users / 1 user throughput: {rates[4] / rates[1]:.2f} (goal >= 0.8)")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
