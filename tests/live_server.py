"""Start the real Space (``python app.py``) on 127.0.0.1 for the API and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.conftest import ROOT

STARTUP_TIMEOUT_S = 180  # importing torch and gradio on a busy 2-core machine


@dataclass(frozen=True)
class LiveApp:
    url: str
    log_path: Path  # everything the server printed
    upload_dir: Path  # the server's GRADIO_TEMP_DIR: uploads and rendered images
    started: float  # time.monotonic() when it answered first
    pid: int  # the server process, for resident-memory readings

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """The server's environment: offline, no analytics, Gradio's files under ``tmp``, no inherited weights."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "GRADIO_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp / "hf-home"),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(tmp / "gradio"),
        OMP_NUM_THREADS="1",  # the test process runs the reference predictor on the same 2 cores
        CXR_BACKEND="torch",  # answers compared with an in-process torch fp32 Predictor; other backends by name
        CXR_CACHE=str(tmp / "cxr-cache"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextmanager
def running_app(weights: Path | None, tmp: Path, *args: str, **env: str) -> Iterator[LiveApp]:
    """Run ``python app.py [--weights WEIGHTS] ARGS`` on a free port until the block ends; ``env`` adds variables."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = tmp / "server.log"
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), *args]
    command += ["--weights", str(weights)] if weights else []
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, env=app_environment(tmp, **env), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_up(url, server, log_path)
        yield LiveApp(url, log_path, tmp / "gradio", time.monotonic(), server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}")


def assert_same_picture(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same size and the same picture up to the server's JPEG loss (~41 dB PSNR; another label's map is ~16 dB off)."""
    assert actual.shape == expected.shape
    mse = np.mean((actual.astype(float) - expected.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 35
