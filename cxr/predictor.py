"""Load weights once, then predict probabilities and every label's Grad-CAM for chest X-rays."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr.backends import (
    AUTO,
    Backend,
    TorchBackend,
    agreement,
    auto_candidates,
    check_backend,
    discard_export,
    openvino_available,
    openvino_backend,
    probe_images,
)
from cxr.cam import class_activation_maps, head_logits, map_strengths, normalize_maps, upsample_map
from cxr.config import ModelConfig
from cxr.input_check import INVERTED_NOTE, InputCheck
from cxr.io import Decoded, ImageSource, Upload, decode
from cxr.labels import display_name
from cxr.model import CXRNet
from cxr.overlay import fit_long_side, render_overlay
from cxr.preprocess import Letterbox, preprocess
from cxr.reliability import AT_CHANCE, label_reliability
from cxr.sources import load_in_order
from cxr.weights import load_model, state_sha256

PRECISIONS = ("fp32", "bf16")
# What an exported backend must meet on the start-up probe to be served: the project's goals for every backend
# against torch fp32 (bench/backends.py measures them over the 738 shared NIH images).
PROBE_MAX_DP = 0.01
PROBE_MIN_PSNR = 35.0

log = logging.getLogger(__name__)

# Said wherever an all-zero map is shown: a blank heatmap is an answer (ReLU of a map that is negative everywhere).
EMPTY_MAP_NOTE = "Grad-CAM finds no region that raises this finding's score"


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return precision


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``"bf16"``, nothing for ``"fp32"``."""
    if check_precision(precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def calibrated_probabilities(
    logits: torch.Tensor, temperatures: Sequence[float] | torch.Tensor, biases: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """(..., K) logits -> float32 probabilities ``sigmoid((logit + bias) / temperature)`` per label.

    The one place logits become probabilities: the predictor, evaluation and calibration fitting all
    call it, so thresholds chosen on its output are the thresholds the app applies. The bias undoes
    the shift that a positive weight w puts on the logits (about ``log w``), which a temperature
    alone cannot; together they are Platt scaling, ``sigmoid(a * logit + c)`` with ``a = 1 / T`` and
    ``c = bias / T``.
    """
    logits = logits.float()
    t = torch.as_tensor(temperatures, dtype=torch.float32, device=logits.device)
    b = torch.as_tensor(biases, dtype=torch.float32, device=logits.device)
    return torch.sigmoid((logits + b) / t)


@dataclass(frozen=True)
class Prediction:
    """What the model says about one image.

    Attributes:
        labels: label names, in model order.
        probabilities: (K,) calibrated probabilities.
        thresholds: (K,) per-label decision thresholds from the model's config.
        maps: (K, h, w) Grad-CAM maps in [0, 1] over the network's square input, each at its strength.
        image: the decoded (H, W) grayscale image in [0, 1] the model saw (corrected when it was a negative),
            for overlays at its own resolution.
        input_check: whether the image is a frontal chest radiograph (see :mod:`cxr.input_check`).
        reliability: ``{label: "above chance" | "at chance" | "not evaluated"}`` from the weights' test
            evaluation (see :mod:`cxr.reliability`).
        empty_maps: labels whose Grad-CAM is all zero (no region raises that finding's score).
        map_strengths: (K,) brightness of each map in [0, 1] (:func:`cxr.cam.map_strengths`): 1 but for faint maps,
            which are pytorch-grad-cam's map dimmed by it; None: all 1.
    """

    labels: tuple[str, ...]
    probabilities: np.ndarray
    thresholds: np.ndarray
    maps: np.ndarray
    image: np.ndarray
    input_check: InputCheck = field(default_factory=InputCheck.unchecked)
    reliability: Mapping[str, str] = field(default_factory=dict)
    empty_maps: tuple[str, ...] = ()
    map_strengths: np.ndarray | None = None

    @property
    def probability_by_label(self) -> dict[str, float]:
        """``{label: probability}`` in model order."""
        return {label: float(p) for label, p in zip(self.labels, self.probabilities, strict=True)}

    @property
    def at_chance(self) -> list[str]:
        """Labels the weights' own test evaluation cannot tell from chance, in model order."""
        return [label for label in self.labels if self.reliability.get(label) == AT_CHANCE]

    @property
    def positive(self) -> list[str]:
        """Labels whose probability reaches their threshold, most probable first.

        Empty for an image the input check refused; an at-chance label is never positive.
        """
        if not self.input_check.accepted:
            return []
        excluded = set(self.at_chance)
        hits = [
            i
            for i, (p, t) in enumerate(zip(self.probabilities, self.thresholds, strict=True))
            if p >= t and self.labels[i] not in excluded
        ]
        return [self.labels[i] for i in sorted(hits, key=lambda i: -self.probabilities[i])]

    def index(self, label: str) -> int:
        """Position of ``label`` in the model's output."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"Unknown label {label!r}; the model predicts {', '.join(self.labels)}.") from None

    def heatmap(self, label: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) Grad-CAM of ``label`` in [0, 1] at the original image's resolution, or at ``shape``; a faint map
        keeps its strength as its peak."""
        i = self.index(label)
        heat = upsample_map(self.maps[i], Letterbox(*(shape or self.image.shape)))
        strength = 1.0 if self.map_strengths is None else float(self.map_strengths[i])
        return heat if strength == 1.0 else heat * np.float32(strength)

    def caption(self, label: str) -> str:
        """``"Pleural thickening: 73.2% (threshold 41.0%, positive)"`` — shown with every map of the label.

        An at-chance label says so instead of a verdict, and an empty map says why the heatmap is blank.
        """
        i = self.index(label)
        if label in self.positive:
            verdict = ", positive"
        elif not self.input_check.accepted:
            verdict = "; not called: the input check refused this image"
        elif self.reliability.get(label) == AT_CHANCE:
            verdict = "; at chance on the test set, so never called positive"
        else:
            verdict = ", below threshold"
        # An inverted upload's caption says so wherever its heatmap goes (page, /cam, --cam-dir files).
        note = "; a negative, inverted back" if self.input_check.inverted else ""
        text = f"{display_name(label)}: {self.probabilities[i]:.1%} (threshold {self.thresholds[i]:.1%}{verdict}{note})"
        return f"{text}. {EMPTY_MAP_NOTE}." if label in self.empty_maps else text

    def overlay(self, label: str, opacity: float = 0.5, colormap: str = "jet", side: int | None = None) -> np.ndarray:
        """uint8 (H, W, 3) rendering of ``label``'s heatmap over the image, captioned with its probability.

        ``side``: drawn with that long side (the size a page shows it at) instead of the image's own resolution;
        the heatmap is upsampled straight to that size, so a smaller overlay costs less to draw and to encode.
        """
        image = self.image if side is None else fit_long_side(self.image, side)
        heat = self.heatmap(label, image.shape)
        return render_overlay(image, heat, opacity=opacity, colormap=colormap, caption=self.caption(label))

    def to_dict(self) -> dict[str, Any]:
        """The answer record: one schema for the CLI's JSON lines, ``/predict``, ``/cam``, MCP and ``cxr score``.

        Add a field here and every entry point carries it.
        """
        return {
            "labels": list(self.labels),
            "probabilities": self.probability_by_label,
            "thresholds": {label: float(t) for label, t in zip(self.labels, self.thresholds, strict=True)},
            "positive": self.positive,
            "at_chance": self.at_chance,
            "label_reliability": {label: self.reliability.get(label, "not evaluated") for label in self.labels},
            "empty_maps": list(self.empty_maps),
            "input_check": self.input_check.to_dict(),
        }


class Predictor:
    """A loaded model plus its input contract; thread-safe for concurrent ``predict`` calls.

    Args:
        model: a CXRNet (put in eval mode here).
        device: where to run; defaults to CUDA when available.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; maps and probabilities are still float32) for the torch backend.
        channels_last: use the channels-last memory layout (faster convolutions on many CPUs) for the torch backend.
        backend: what runs the model (see :mod:`cxr.backends`): ``"torch"`` (default, the reference),
            ``"openvino"``, ``"openvino-bf16"``, or ``"auto"``: the fastest this CPU supports whose answers on a probe
            agree with torch fp32 (max |Δp| and heatmap PSNR, see :data:`PROBE_MAX_DP`), else torch. An exported
            backend is always probed first; one that disagrees is never served.
    """

    def __init__(
        self,
        model: CXRNet,
        *,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        backend: str = "torch",
    ) -> None:
        self.precision = check_precision(precision)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        self.config: ModelConfig = model.config
        self._temperatures = torch.tensor(self.config.temperatures, device=self.device)
        self._biases = torch.tensor(self.config.biases, device=self.device)
        self._thresholds = np.asarray(self.config.thresholds, dtype=np.float32)
        self.reliability = label_reliability(self.config)
        self.input_checker = model.input_checker
        self.backend: Backend = TorchBackend(self.model, self.device, self.precision, self.memory_format)
        if check_backend(backend) != "torch":
            self.backend = self._exported_backend(backend)

    def _exported_backend(self, requested: str) -> Backend:
        """The first of the requested (or, for "auto", this CPU's) exported backends that agrees with torch fp32
        on the probe; torch for "auto" when none does. A cached export that disagrees is discarded and made again
        once (a damaged cache heals itself); a fresh one that disagrees is passed over."""
        names = auto_candidates() if requested == AUTO and self.device.type == "cpu" else [requested]
        if requested != AUTO and (self.device.type != "cpu" or not openvino_available()):
            raise ValueError(f"backend {requested!r} needs a CPU and the openvino package (pip install 'cxr[app]').")
        sha = state_sha256(self.model)
        probe = preprocess(probe_images(self.config.image_size), self.config)
        with torch.inference_mode():
            reference = self._answers(TorchBackend(self.model, self.device, "fp32", self.memory_format)(probe))
        for name in names:
            for attempt in ("cached", "fresh"):
                try:
                    backend = openvino_backend(self.model, sha, "bf16" if name.endswith("bf16") else "fp32")
                    with torch.inference_mode():
                        max_dp, psnr = agreement(reference, self._answers(backend(probe)))
                except Exception as err:  # a runtime that fails to load or run is passed over, not served
                    log.warning("Backend %s could not run here (%s: %s).", name, type(err).__name__, err)
                    max_dp, psnr = float("inf"), float("-inf")
                if max_dp <= PROBE_MAX_DP and psnr >= PROBE_MIN_PSNR:
                    log.info("Backend %s: agrees with torch fp32 on the probe (max |Δp| %.2g, maps %.0f dB).",
                             name, max_dp, psnr)  # fmt: skip
                    return backend
                log.warning("Backend %s disagrees with torch fp32 on the probe (max |Δp| %.3g, maps %.1f dB): "
                            "discarding its export (%s).", name, max_dp, psnr, attempt)  # fmt: skip
                discard_export(sha)
        if requested != AUTO:
            raise RuntimeError(f"Backend {requested!r} disagrees with torch fp32 on this machine; use 'torch'.")
        log.info("Backend torch (fp32): no exported backend serves here.")
        return TorchBackend(self.model, self.device, self.precision, self.memory_format)

    @property
    def backend_name(self) -> str:
        """What runs the model: ``"torch"``, ``"torch-bf16"``, ``"openvino"`` or ``"openvino-bf16"``."""
        return self.backend.name

    @classmethod
    def from_pretrained(
        cls, source: str | Path | None = None, revision: str | None = None, **options: object
    ) -> Predictor:
        """Load weights from a folder or Hub repo (see :func:`cxr.weights.load_model`) and wrap them.

        Without ``source``, the weights come from :func:`cxr.sources.load_in_order` (``CXR_WEIGHTS``, the
        project's Hub repo at its pinned revision, the bundled starter, demonstration weights; the log says
        which and why). ``options`` go to :class:`Predictor` (device, precision, channels_last, backend) or to the
        loader.
        """
        predictor_keys = {"device", "precision", "channels_last", "backend"}
        own = {k: v for k, v in options.items() if k in predictor_keys}
        hub = {k: v for k, v in options.items() if k not in predictor_keys}
        if source is None:
            return cls(load_in_order(revision=revision)[0], **own)  # type: ignore[arg-type]
        return cls(load_model(source, revision, **hub), **own)  # type: ignore[arg-type]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def predict(self, image: ImageSource, name: str | None = None) -> Prediction:
        """Decode, preprocess and run one image; raises :class:`cxr.io.InvalidImageError` on bad input."""
        return self.predict_batch([decode(image, name=name)])[0]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[ImageSource | Decoded], batch_size: int = 8) -> list[Prediction]:
        """Predict many images, ``batch_size`` per forward pass; order is kept.

        Uploads are best given as they came (paths, bytes) or as :func:`cxr.io.decode` records, so the input
        check also reads what the upload said (colour, DICOM modality); a decoded grey array is read as is.
        """
        decoded = [Decoded(image) if _is_decoded(image) else decode(image) for image in images]
        results: list[Prediction] = []
        for start in range(0, len(decoded), batch_size):
            results += self._predict_decoded(decoded[start : start + batch_size])
        return results

    def _predict_decoded(self, chunk: list[Decoded], correct_negatives: bool = True) -> list[Prediction]:
        """One forward pass over decoded images: transition features -> logits, every label's map, the check.

        An image the check finds inverted (a negative) is inverted back and read again in a second pass, and
        answered like the original radiograph, with ``inverted=True``; only those images pay for it.
        """
        features = self.features(preprocess([d.image for d in chunk], self.config))
        probabilities, maps, strengths = self._answers(features)
        predictions = [
            Prediction(
                self.labels,
                probabilities[i],
                self._thresholds,
                maps[i],
                d.image,
                input_check=self.check_input(d.image, features[i], negatives=correct_negatives, upload=d.upload),
                reliability=self.reliability,
                empty_maps=tuple(label for label, s in zip(self.labels, strengths[i], strict=True) if s == 0),
                map_strengths=strengths[i],
            )
            for i, d in enumerate(chunk)
        ]
        negatives = [i for i, p in enumerate(predictions) if p.input_check.inverted] if correct_negatives else []
        if negatives:
            corrected = self._predict_decoded(
                [Decoded(1.0 - chunk[i].image, chunk[i].upload) for i in negatives], correct_negatives=False
            )
            for i, fixed in zip(negatives, corrected, strict=True):
                check = fixed.input_check
                note = INVERTED_NOTE if check.accepted else check.message
                predictions[i] = dataclasses.replace(
                    fixed, input_check=dataclasses.replace(check, inverted=True, message=note)
                )
        return predictions

    def _answers(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transition map -> ((N, K) probabilities, (N, K, h, w) maps in [0, 1] at their strengths, (N, K) map
        strengths, 0 for an empty map), in torch float32 whatever backend made the map."""
        logits = head_logits(self.model, features)
        signed = class_activation_maps(self.model, features)
        strengths = map_strengths(signed)
        maps = normalize_maps(torch.relu(signed)) * strengths[..., None, None]
        probabilities = calibrated_probabilities(logits, self._temperatures, self._biases).cpu().numpy()
        return probabilities, maps.cpu().numpy(), strengths.cpu().numpy()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) preprocessed images -> (N, C, h, w) float32 transition map: the one model run per batch,
        by :attr:`backend`.

        Everything else (logits, Grad-CAM, the input check) is computed from this map.
        """
        return self.backend(x)

    def check_input(
        self, image: np.ndarray, features: torch.Tensor, negatives: bool = True, upload: Upload | None = None
    ) -> InputCheck:
        """The input check of one decoded image, its (C, h, w) transition map and what its upload said
        (:class:`cxr.io.Upload`; default: grey, not DICOM); unchecked without a check.

        ``negatives=False``: the image is already a corrected negative; it is not found inverted again.
        """
        if self.input_checker is None:
            return InputCheck.unchecked()
        return self.input_checker.check(image, features, negatives, upload)


def _is_decoded(image: object) -> bool:
    """True for the float32 (H, W) arrays :func:`cxr.io.load_image` returns."""
    return isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.float32
