"""Helpers shared by the training tests: a small prepared synthetic dataset and fit subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from tests.conftest import ROOT
from train.data.prepare import prepare
from train.data.synth import SynthConfig, generate

IMAGE_SIZE = 64  # the network input of every training test (resnet18 trunk)
# Settings every test run shares: small, offline, deterministic on CPU.
TINY_RUN = ["--trunk", "resnet18", "--image-size", str(IMAGE_SIZE), "--no-pretrained", "--device", "cpu"]
TINY_RUN += ["--workers", "0", "--no-progress", "--val-fraction", "0.25"]


def prepared_synth(folder: Path, patients: int, seed: int = 0) -> Path:
    """A synth dataset of 128 px images with its cache at the test input size."""
    data = generate(folder, SynthConfig(patients=patients, size=128, seed=seed), progress=False)
    prepare(data, image_size=IMAGE_SIZE, workers=2, progress=False)
    return data


def fit_command(*args: str) -> list[str]:
    """``python -m train fit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "train", "fit", *args]


class FitProcess:
    """A ``python -m train fit`` subprocess whose output lines are collected as they come."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 300.0, poll: float = 0.001) -> bool:
        """Poll ``predicate()`` until it holds (True) or the process ends first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process.poll() is not None:
                return bool(predicate())
            time.sleep(poll)
        raise TimeoutError(f"condition not met in {timeout} s; output so far:\n" + "\n".join(self.lines[-20:]))

    def kill(self) -> None:
        """SIGKILL, no chance to clean up, as an OOM killer or a preempted node would."""
        self.process.kill()
        self.finish()

    def finish(self, timeout: float = 600.0) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file."""
    from safetensors.torch import load_file

    return load_file(str(path))


def comparable(history: list[dict]) -> list[dict]:
    """A metrics history without its wall-clock fields."""
    return [{k: v for k, v in record.items() if k not in ("train_seconds", "train_images_per_s")} for record in history]
