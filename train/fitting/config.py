"""What a training run depends on: :class:`TrainConfig`, its recipes, and the checks that refuse bad settings.

Every field has a one-line comment; a run saves its config in ``run.json`` and in every checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cxr.config import IMAGENET_MEAN, IMAGENET_STD
from cxr.labels import LABEL_SETS


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint. Defaults are the "default" recipe."""

    # data
    data_dir: str = ""  # NIH root: Data_Entry csv, train_val_list.txt, test_list.txt, image folders
    cache_dir: str = ""  # prepared cache (default DATA_DIR/cache-IMAGE_SIZE, see `python -m train prepare`)
    out: str = "runs/cxr"  # run folder: checkpoints/ and the exported weights/
    labels: str = "chestxray14"  # chestxray14 (14 findings) or chestxray8 (the first 8)
    val_fraction: float = 0.1  # share of train_val_list.txt patients held out for validation
    available_only: bool = False  # official split restricted to the images under data_dir (part of the release)
    # model
    trunk: str = "resnet50"  # timm trunk name
    image_size: int = 512  # network input side; the cache must be prepared at this size
    pretrained: bool = True  # start the trunk from ImageNet weights (needs the Hub or the timm cache)
    # optimisation
    recipe: str = "default"  # name of the preset these values came from (see RECIPES)
    epochs: int = 12  # the cosine schedule spans them all; the best epoch is exported
    batch_size: int = 64  # images per optimizer step, over all processes and accumulation steps
    accum_steps: int = 0  # micro-batches per optimizer step (gradient accumulation); 0: the fewest that fit in memory
    optimizer: str = "adamw"  # adamw (decoupled weight decay) or adam
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.01  # on conv and linear weights; never on biases or norm layers
    warmup_epochs: float = 1.0  # linear warm-up from lr/steps to lr
    schedule: str = "cosine"  # cosine (down to min_lr_ratio * lr) or constant
    min_lr_ratio: float = 0.01  # final learning rate of the cosine schedule, relative to lr
    pos_weight: str = "class-sqrt"  # class-sqrt: sqrt(#neg/#pos) per label; batch: #neg/#pos per batch;
    # wang: Wang et al.'s beta_P / beta_N weighted cross-entropy, per batch; none
    augment: bool = True  # mild rotation/zoom/shift and brightness/contrast/gamma jitter
    hflip: bool = False  # left-right flips: off, they turn normal anatomy into dextrocardia
    normalize: str = "imagenet"  # imagenet: the trunk's mean/std; none: plain [0, 1] (ToTensor), only
    # without a pretrained trunk: ImageNet weights always get the mean/std they were trained with
    # system
    seed: int = 0  # model init, validation patients, sampling order, augmentation
    device: str = "auto"  # auto (CUDA when available), cuda or cpu
    precision: str = "auto"  # auto: bf16 on CUDA if supported, else fp16 + GradScaler; fp32 on CPU
    channels_last: bool = True  # NHWC memory layout (faster convolutions with tensor cores)
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # deterministic kernels only (an op without one is an error): bit-exact reruns
    workers: int = min(8, os.cpu_count() or 1)  # DataLoader worker processes per rank
    eval_batch_size: int = 128  # images per forward pass in validation
    progress: bool = True  # progress bars on rank 0


# Presets: field values over the TrainConfig defaults. Why the default looks like this: README / report.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    # The original report, exactly: Adam 1e-4, batch 16, 5 epochs, BCE weighted per batch by #neg/#pos,
    # resize + to-tensor (no mean/std normalisation, no augmentation), constant learning rate, 512 px.
    "seed": {
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "batch_size": 16,
        "epochs": 5,
        "warmup_epochs": 0.0,
        "schedule": "constant",
        "pos_weight": "wang",
        "augment": False,
        "hflip": False,
        "normalize": "none",
        "image_size": 512,
    },
}
NORMALIZATION = {
    "imagenet": dict(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "none": dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
}
RUN_FILE = "run.json"  # the run's TrainConfig, in the run folder
# Fields that may differ when a run is resumed (where things are, how fast): the rest is the run.
RUNTIME_FIELDS = {"data_dir", "cache_dir", "device", "workers", "eval_batch_size", "progress", "compile"}
CHOICES = {
    "labels": tuple(LABEL_SETS),
    "optimizer": ("adamw", "adam"),
    "schedule": ("cosine", "constant"),
    "pos_weight": ("class-sqrt", "batch", "wang", "none"),
    "normalize": tuple(NORMALIZATION),
    "precision": ("auto", "fp32", "bf16", "fp16"),
}


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message says what to do."""


def make_config(recipe: str = "default", **overrides: Any) -> TrainConfig:
    """The recipe's config with ``overrides`` (None values are ignored) applied and checked."""
    if recipe not in RECIPES:
        raise TrainError(f"Unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    changes = {key: value for key, value in overrides.items() if value is not None}
    return validate(TrainConfig(**{**RECIPES[recipe], **changes, "recipe": recipe}))


def validate(cfg: TrainConfig) -> TrainConfig:
    """Refuse settings that cannot work, with a message naming the option."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise TrainError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}.")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise TrainError("--val-fraction must be in (0, 1): thresholds and the best epoch are chosen on validation.")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise TrainError("--epochs, --batch-size and --lr must be positive.")
    if cfg.accum_steps < 0:
        raise TrainError("--accum-steps must be positive, or 0 to take the fewest micro-batches that fit in memory.")
    if not cfg.data_dir:
        raise TrainError("--data-dir is required (the folder with Data_Entry and the split lists).")
    return cfg
