"""Grad-CAM for every label from one forward pass, and pytorch-grad-cam's other methods.

For CXRNet, Grad-CAM on the transition layer has a closed form. With A the transition map (C, h, w)
and logit_k = sum_c W[k, c] * LSE(A_c) + b_k, the gradient of LSE over space sums to one per channel
(see :class:`cxr.model.LSEPool`), so Grad-CAM's channel weights — the spatial mean of the gradient —
are ``W[k, c] / (h * w)``. All K maps are ``relu(einsum(weights, A))``: no backward pass, no hooks, one
forward for every label. ``tests/test_cam.py`` checks this against ``pytorch_grad_cam.GradCAM`` on
real radiographs.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
import torch.nn.functional as F

from cxr.model import CXRNet
from cxr.preprocess import Letterbox
from cxr.resize import bilinear

# A map whose peak (its largest positive value) is below this fraction of its largest magnitude is faint: it is drawn
# dimmed in proportion (see map_strengths). Chosen on the starter's 632 train_val images of the 738 shared NIH images:
# the smallest of 2, 3, 4, 5, 7.5 (x 1e-3) whose OpenVINO bf16 heatmaps were all >= 40 dB PSNR against torch fp32's
# (5 dB above the goal, for CPUs that round differently); 2.9% of those maps are faint.
FAINT_PEAK = 5e-3

# The library's methods, by the names researchers know them, and their pytorch-grad-cam classes; all use the
# transition layer. pytorch-grad-cam is imported only when one is asked for: it pulls in scikit-learn and scipy
# (~200 MB), which predicting and serving do not need, so it is the optional `cxr[cams]`.
LIBRARY_CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
}


def head_logits(model: CXRNet, features: torch.Tensor) -> torch.Tensor:
    """Transition map -> (N, K) logits, LSE pooling and fc in float32 even under autocast.

    Serving, evaluation and the validation that picks thresholds all call this, so a threshold
    chosen on validation meets the very numbers it is applied to (a bf16 head differs by up to
    ~0.02 in logit).
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        return F.linear(model.pool(features.float()), model.fc.weight.float(), model.fc.bias.float())


def class_activation_maps(model: CXRNet, features: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) signed maps ``sum_c W[k, c] * A_c / (h * w)`` in float32: Wang et al.'s map, before ReLU."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        h, w = features.shape[-2:]
        return torch.einsum("kc,nchw->nkhw", model.fc.weight.float() / (h * w), features.float())


def logits_and_grad_cams(model: CXRNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass -> ((N, K) logits, (N, K, h, w) raw Grad-CAM maps of every label).

    The maps equal pytorch-grad-cam's unnormalised Grad-CAM on ``model.transition``; the head is cheap,
    so logits and maps are computed in float32 even under autocast.
    """
    features = model.forward_features(x)
    return head_logits(model, features), torch.relu(class_activation_maps(model, features))


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (h, w) map to [0, 1] as pytorch-grad-cam does: ``(m - min) / (max + 1e-7)``.

    This min-max scaling makes a weak finding's map look as hot as a strong one's, which is why
    every rendering of a map also states the label's probability.
    """
    flat = maps.flatten(-2)
    shifted = flat - flat.min(dim=-1, keepdim=True).values
    return (shifted / (shifted.max(dim=-1, keepdim=True).values + 1e-7)).view_as(maps)


def map_strengths(raw_maps: torch.Tensor, faint_peak: float = FAINT_PEAK) -> torch.Tensor:
    """(N, K) brightness in [0, 1] at which each signed map (N, K, h, w, before ReLU) is drawn: its peak over
    ``faint_peak`` times its largest magnitude, capped at 1; 0 for an empty map (no positive value).

    Why: min-max scaling draws a map whose peak is 1e-4 of its magnitude, rounding noise, as brightly as a strong
    one, and the sign of such a peak flips with the arithmetic (bf16 vs fp32: an empty map or a full-brightness hot
    spot). Fading faint maps in proportion keeps what is drawn continuous in the model's output; every other map
    (strength 1) is exactly pytorch-grad-cam's.
    """
    flat = raw_maps.flatten(-2)
    peak, magnitude = flat.amax(dim=-1), flat.abs().amax(dim=-1)
    return (peak / (faint_peak * magnitude).clamp(min=torch.finfo(flat.dtype).tiny)).clamp(0.0, 1.0)


def upsample_map(cam: np.ndarray, box: Letterbox) -> np.ndarray:
    """Upsample a (h, w) map of the network's square input to the original (H, W) image, in [0, 1].

    Bilinear (as OpenCV, with which pytorch-grad-cam resizes), then min-max scaled again over the square as the
    library does after resizing (bilinear samples miss the exact peak), so a square image's map equals
    the library's output.
    """
    square = bilinear(cam, box.side, box.side)
    square -= square.min()
    square /= square.max() + 1e-7
    return np.ascontiguousarray(box.crop(square))


def library_cams(model: CXRNet, x: torch.Tensor, label_indices: list[int], method: str = "gradcam") -> np.ndarray:
    """Maps of ``method`` from pytorch-grad-cam for one input (1, 3, S, S): (len(label_indices), S, S) in [0, 1].

    Slower than :func:`logits_and_grad_cams` (a backward pass per label, or many forwards for
    score/ablation CAM), but every method of the library is available on the same layer.
    """
    try:
        class_name = LIBRARY_CAM_METHODS[method]
    except KeyError:
        raise ValueError(f"Unknown CAM method {method!r}; choose from {', '.join(LIBRARY_CAM_METHODS)}.") from None
    try:
        library = importlib.import_module("pytorch_grad_cam")
    except ImportError:
        raise ImportError('library_cams needs pytorch-grad-cam: pip install "cxr[cams]"') from None
    target = importlib.import_module("pytorch_grad_cam.utils.model_targets").ClassifierOutputTarget
    with getattr(library, class_name)(model=model, target_layers=[model.transition]) as cam:
        return np.stack([cam(input_tensor=x, targets=[target(i)])[0] for i in label_indices])
