"""Where the one model run per batch happens: torch (the reference) or the same network exported to OpenVINO.

A backend takes (N, 3, S, S) preprocessed images and returns the (N, C, h, w) float32 transition map. Logits,
every label's Grad-CAM and the input check are computed from that map in torch float32 by
:class:`cxr.predictor.Predictor`, so every backend shares the head's math; only the trunk's arithmetic differs.

- ``"torch"``: the model itself, fp32 (bit-identical to the reference) or bf16 autocast.
- ``"openvino"`` / ``"openvino-bf16"``: the trunk + transition exported once per weights with
  ``openvino.convert_model`` and compiled for this CPU in fp32 or bf16 (bf16 only where the CPU has bf16
  instructions: AVX-512 BF16 or AMX). The export is an OpenVINO IR (XML + raw tensors, nothing pickled),
  cached under ``$CXR_CACHE`` (default ``~/.cache/cxr``) by the SHA-256 of the weights' tensors.
  bf16 agrees with fp32 on every heatmap because faint maps are drawn faint (:func:`cxr.cam.map_strengths`).
- ``"auto"``: the fastest backend this CPU supports whose answers agree with torch fp32 on a probe
  (see :func:`cxr.predictor.Predictor`), else torch.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cxr.model import CXRNet

log = logging.getLogger(__name__)

BACKENDS = ("torch", "openvino", "openvino-bf16")
AUTO = "auto"
BACKEND_ENV = "CXR_BACKEND"  # the app's and the CLI's default backend when set; else "auto"
EXPORT_FORMAT = 1  # bump when the exported graph changes meaning, so old cache entries are not read
EXPORT_FILE = "features.xml"  # + features.bin beside it (OpenVINO IR)
EXPORT_RECORD = "export.json"


class Backend(Protocol):
    """One model run: (N, 3, S, S) float32 images -> (N, C, h, w) float32 transition map on the model's device."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """The model's own ``forward_features``, in fp32 or under bf16 autocast (the output is float32 either way)."""

    def __init__(self, model: CXRNet, device: torch.device, precision: str, memory_format: torch.memory_format):
        self.model = model
        self.device = device
        self.precision = precision
        self.memory_format = memory_format
        self.name = "torch" if precision == "fp32" else f"torch-{precision}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, memory_format=self.memory_format)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model.forward_features(x).float()


class OpenVINOBackend:
    """A compiled OpenVINO graph of ``forward_features``; one infer request per calling thread (they are not
    thread-safe, the compiled model is)."""

    def __init__(self, compiled: object, name: str) -> None:
        self.compiled = compiled
        self.name = name
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()  # type: ignore[attr-defined]
        request.infer([np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)])
        # The request reuses its output buffer on the next call: copy out.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True))


def openvino_available() -> bool:
    """True when the ``openvino`` package imports (the ``cxr[app]`` extra installs it)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def openvino_core() -> object:
    """The process's one ``openvino.Core``, kept for the life of the process.

    Why not a Core per model: OpenVINO's CPU plugin gives the thread that compiles a model an alternate signal
    stack inside the plugin's memory, and unloads the plugin when its last Core and compiled model are freed. Freed
    from another thread (a garbage collection anywhere), that leaves the compiling thread's signal stack unmapped,
    and the next signal it handles (SIGCHLD from a DataLoader's workers, Ctrl-C) kills the process with SIGSEGV:
    tests/test_backends.py shows it. Keeping the plugin loaded keeps that memory mapped.
    """
    import openvino as ov

    return ov.Core()


def cpu_has_bf16() -> bool:
    """True when OpenVINO can run bf16 natively on this CPU (AVX-512 BF16 or AMX; its own capability list)."""
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def auto_candidates() -> list[str]:
    """Backends worth trying on this machine, fastest first; torch (the fallback) is not listed."""
    if not openvino_available():
        return []
    return ["openvino-bf16", "openvino"] if cpu_has_bf16() else ["openvino"]


def cache_root() -> Path:
    """``$CXR_CACHE``, else ``$XDG_CACHE_HOME/cxr``, else ``~/.cache/cxr``."""
    if os.environ.get("CXR_CACHE"):
        return Path(os.environ["CXR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cxr"


def export_folder(weights_sha256: str, root: Path | None = None) -> Path:
    """Where the OpenVINO export of the weights with this SHA-256 is cached."""
    return (root or cache_root()) / "openvino" / weights_sha256


def _record(model: CXRNet, weights_sha256: str) -> dict[str, object]:
    import openvino as ov

    return {
        "format": EXPORT_FORMAT,
        "weights_sha256": weights_sha256,
        "image_size": model.config.image_size,
        "openvino": ov.__version__,
    }


def export_openvino(model: CXRNet, folder: Path) -> None:
    """Write ``forward_features`` as OpenVINO IR (fp32 weights, any batch size) into ``folder`` (created)."""
    import openvino as ov

    size = model.config.image_size

    class Features(torch.nn.Module):  # convert_model traces forward(): point it at the transition map
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_features(x)

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # OpenVINO traces with it
        graph = ov.convert_model(
            Features().eval(), example_input=torch.zeros(1, 3, size, size), input=[ov.PartialShape([-1, 3, size, size])]
        )
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(graph, folder / EXPORT_FILE, compress_to_fp16=False)  # fp32 on disk: the reference's numbers


def cached_export(model: CXRNet, weights_sha256: str, root: Path | None = None) -> tuple[Path, bool]:
    """(path of the IR for these weights, whether it was already cached), exporting it if needed.

    The export is written into a temporary folder beside its final place and renamed into it, so a reader
    never sees half a file and two processes exporting at once both end with a complete one.
    """
    final = export_folder(weights_sha256, root)
    wanted = _record(model, weights_sha256)
    record = final / EXPORT_RECORD
    if record.is_file() and (final / EXPORT_FILE).is_file():
        try:
            if json.loads(record.read_text(encoding="utf-8")) == wanted:
                return final / EXPORT_FILE, True
        except (OSError, ValueError):
            pass
        log.info("Cached OpenVINO export in %s is for other weights or versions: exporting again.", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{weights_sha256[:12]}-", dir=final.parent))
    try:
        export_openvino(model, scratch)
        (scratch / EXPORT_RECORD).write_text(json.dumps(wanted, indent=1), encoding="utf-8")
        discard_export(weights_sha256, root)
        try:
            scratch.rename(final)
        except OSError:  # another process renamed its complete export there first
            if not (final / EXPORT_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final / EXPORT_FILE, False


def discard_export(weights_sha256: str, root: Path | None = None) -> None:
    """Remove the cached export of these weights (the next load exports again)."""
    shutil.rmtree(export_folder(weights_sha256, root), ignore_errors=True)


def openvino_backend(
    model: CXRNet, weights_sha256: str, precision: str, threads: int | None = None, root: Path | None = None
) -> Backend:
    """Compile the (cached) export of ``model`` for this CPU in ``"fp32"`` or ``"bf16"`` on ``threads`` threads
    (default: torch's)."""
    path, cached = cached_export(model, weights_sha256, root)
    log.info("OpenVINO export %s (%s).", path.parent, "cached" if cached else "made now")
    core = openvino_core()
    graph = core.read_model(path)

    compiled = core.compile_model(
        graph,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else precision,
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",  # one batch at a time, all threads on it (cxr.batching)
        },
    )
    return OpenVINOBackend(compiled, "openvino" if precision == "fp32" else f"openvino-{precision}")


def default_backend(environ: Mapping[str, str] = os.environ) -> str:
    """The app's and the CLI's backend when none is given: ``$CXR_BACKEND``, else ``"auto"``."""
    return check_backend(environ.get(BACKEND_ENV) or AUTO)


def check_backend(name: str) -> str:
    """Return ``name`` if it is ``"auto"`` or one of :data:`BACKENDS`, else raise ValueError."""
    if name != AUTO and name not in BACKENDS:
        raise ValueError(f"backend must be {AUTO!r} or one of {BACKENDS}, got {name!r}.")
    return name


def probe_images(size: int, count: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Deterministic smooth grayscale images in [0, 1] (no patient data): the start-up check's input.

    Blurred noise has structure at every scale the trunk sees, so a wrong export changes its answers.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 1, size // 16, size // 16, generator=generator)
    smooth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    return [image for image in smooth.clamp(0, 1)[:, 0].numpy()]


def map_psnr(reference: np.ndarray, other: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``other`` against ``reference``, both heatmaps in [0, 1] (peak 1)."""
    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(other, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def agreement(
    reference: tuple[np.ndarray, np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[float, float]:
    """(max |Δp|, lowest per-image heatmap PSNR in dB) of one backend's answers against the reference's.

    Each is ``(probabilities (N, K), maps (N, K, h, w) in [0, 1], map strengths (N, K))`` as the predictor computes
    them from a transition map.
    """
    max_dp = float(np.abs(reference[0] - other[0]).max())
    return max_dp, min(map_psnr(a, b) for a, b in zip(reference[1], other[1], strict=True))
