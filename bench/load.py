"""Load test of the Space: N concurrent gradio_client users against app.py on 127.0.0.1.

    python -m bench.load --weights DIR [--users 4] [--requests 500] [--seconds 900]

Starts the real server, warms it up, then lets ``--users`` clients call ``/predict`` (every 5th call
``/cam``) on the real NIH examples until ``--requests`` calls are done or ``--seconds`` have passed;
every loop stops by itself. Prints throughput, p50/p95 latency, failures and the server's resident
memory before and after. ``tests/test_load.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gradio_client import Client, handle_file

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

    def table(self) -> str:
        rows = [
            ("users", f"{self.users}"),
            ("requests (failures)", f"{self.requests} ({len(self.failures)})"),
            ("throughput", f"{len(self.latencies_s) / self.wall_s:.2f} requests/s"),
            ("latency p50 / p95", f"{statistics.median(self.latencies_s):.2f} s / {self.percentile(0.95):.2f} s"),
            ("server RSS before → after", f"{self.rss_before_mb:.0f} MB → {self.rss_after_mb:.0f} MB"),
            ("RSS growth", f"{self.rss_after_mb - self.rss_before_mb:+.0f} MB"),
        ]
        return "| measure | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="weights folder the server loads")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxr-load-") as tmp, running_app(args.weights, Path(tmp)) as app:
        result = run_load(app.url, app.pid, args.users, args.requests, args.seconds)
    print(result.table())
    for failure in result.failures[:10]:
        print("failure:", failure)


if __name__ == "__main__":
    main()
