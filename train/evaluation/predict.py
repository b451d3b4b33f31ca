"""Run a weights folder over the images of a split: logits of all images, Grad-CAM maps of chosen ones.

Inputs take the app's road: files are decoded by :func:`cxr.io.load_image` and letterboxed by
:func:`cxr.preprocess.fit_to_square`; a prepared cache holds exactly that, rounded to 8 bits (as
training saw it). Logits (the served float32 head, :func:`cxr.cam.head_logits`) and every label's
signed class activation map (Wang et al.'s localization map, :func:`cxr.cam.class_activation_maps`)
come from one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cxr.cam import class_activation_maps, head_logits
from cxr.io import load_image
from cxr.model import CXRNet
from cxr.predictor import precision_context
from cxr.preprocess import fit_to_square, normalize
from train.data.cache import ImageCache
from train.data.dataset import CachedDataset, to_model_input
from train.data.nih import Record


class DecodedImages(Dataset):
    """Image files decoded and letterboxed as the app does: item ``i`` is ``((S, S) float32, i)``."""

    def __init__(self, paths: Sequence[Path], image_size: int) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(fit_to_square(load_image(self.paths[i]), self.image_size)), i


@dataclass
class SplitPredictions:
    """What the model said about each record of a split, in record order."""

    logits: np.ndarray  # (N, K) float32
    maps: dict[str, np.ndarray]  # image name -> (K, h, w) signed class activation maps, for the images asked for


def predict_records(
    model: CXRNet,
    records: Sequence[Record],
    *,
    images: dict[str, Path] | None = None,
    cache: ImageCache | None = None,
    keep_maps: set[str] | frozenset[str] = frozenset(),
    batch_size: int = 32,
    workers: int = 0,
    precision: str = "fp32",
    description: str = "predict",
) -> SplitPredictions:
    """Logits for every record (and maps for ``keep_maps``), reading the cache if given, else the files.

    Args:
        model: the network, already on its device (eval mode is set here).
        records: the images to run, in the order results are returned.
        images: image name -> file, used when no cache is given.
        cache: a prepared cache holding every record at the model's image size.
        keep_maps: names of images whose signed maps are returned (e.g. those with boxes); their ReLU is
            the Grad-CAM the app shows.
        batch_size, workers: DataLoader settings.
        precision: "fp32" or "bf16" (autocast; logits and maps are computed in float32 regardless).
        description: progress-bar label.
    """
    config = model.config
    device = next(model.parameters()).device
    if cache is not None:
        dataset: Dataset = CachedDataset(cache, records, config.labels)
    else:
        if images is None:
            raise ValueError("predict_records needs either a prepared cache or the image files.")
        dataset = DecodedImages([images[record.image] for record in records], config.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    logits = np.empty((len(records), config.num_labels), dtype=np.float32)
    maps: dict[str, np.ndarray] = {}
    model.eval()
    with torch.inference_mode(), tqdm(total=len(records), desc=description, unit="img", dynamic_ncols=True) as bar:
        for batch in loader:
            pixels, index = batch[0], batch[-1]
            pixels = pixels.to(device, non_blocking=True)
            x = to_model_input(pixels, config) if cache is not None else normalize(pixels, config)
            with precision_context(device, precision):
                features = model.forward_features(x)
            logits[index.numpy()] = head_logits(model, features).cpu().numpy()
            kept = [row for row, i in enumerate(index.tolist()) if records[i].image in keep_maps]
            if kept:
                batch_maps = class_activation_maps(model, features[kept]).cpu().numpy()
                for row, signed in zip(kept, batch_maps, strict=True):
                    maps[records[index[row]].image] = signed
            bar.update(len(index))
    return SplitPredictions(logits, maps)
