"""``python -m train fit``: the command line over :func:`train.fitting.loop.fit`.

Every option's help ends with its default and, where it differs, the seed recipe's value; options left out
take the recipe's value (or, with ``--resume``, the saved run's).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from cxr.config import ConfigError
from train.data.cache import CacheError
from train.data.nih import DataError
from train.fitting import checkpoint as ckpt
from train.fitting.config import CHOICES, RECIPES, TrainConfig, TrainError, make_config
from train.fitting.loop import fit
from train.fitting.runs import check_resume_options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train fit",
        description="Train CXRNet on NIH ChestX-ray14 (official split; validation patients carved from "
        "train_val_list.txt) from the prepared cache, and export the best epoch as a cxr weights folder. "
        "Multi-GPU: torchrun --nproc-per-node N -m train fit ... Options left out take the recipe's value.",
    )

    def add(flag: str, text: str, **options: Any) -> None:
        """An option whose help ends with its default, and the seed recipe's value where that differs."""
        field = options.get("dest", flag[2:].replace("-", "_"))
        default = getattr(TrainConfig(), field, "")
        seed = RECIPES["seed"].get(field, default)
        note = f" (default {default}" + (f"; seed recipe {seed})" if seed != default else ")")
        negative = options.get("action") == "store_false"
        if negative:
            options["default"] = None  # None = not given: the recipe (or the saved run) decides
        parser.add_argument(flag, help=text if default == "" or negative else text + note, **options)

    flag = argparse.BooleanOptionalAction
    add("--data-dir", "NIH root with Data_Entry csv, split lists and images (required for a new run)")
    add("--cache-dir", "prepared cache (default DATA_DIR/cache-IMAGE_SIZE)")
    add("--out", "run folder: run.json, checkpoints/ and the exported weights/", default=TrainConfig().out)
    add("--resume", "continue the run in --out (from its newest checkpoint, if any)", action="store_true")
    add("--recipe", "preset of the settings below", choices=tuple(RECIPES))
    add("--labels", "label set", choices=CHOICES["labels"])
    add("--val-fraction", "share of train_val patients held out for validation", type=float)
    add("--available-only", "official split restricted to the images under --data-dir (part of the release; "
        "recorded in run.json and the weights' config)", action=flag)  # fmt: skip
    add("--trunk", "timm trunk", metavar="NAME")
    add("--image-size", "network input side in pixels (prepare the cache at the same size)", type=int)
    add("--no-pretrained", "random trunk init instead of ImageNet weights", dest="pretrained", action="store_false")
    add("--epochs", "epochs; the best one is exported", type=int)
    add("--batch-size", "images per optimizer step, over all processes", type=int)
    add("--accum-steps", "micro-batches per step (gradient accumulation); 0: the fewest that fit in memory", type=int)
    add("--optimizer", "optimizer", choices=CHOICES["optimizer"])
    add("--lr", "peak learning rate", type=float)
    add("--weight-decay", "decoupled weight decay on conv/linear weights", type=float)
    add("--warmup-epochs", "linear warm-up length", type=float)
    add("--schedule", "learning-rate schedule after warm-up", choices=CHOICES["schedule"])
    add("--min-lr-ratio", "end of the cosine, relative to --lr", type=float)
    add("--pos-weight", "BCE positive weight", choices=CHOICES["pos_weight"])
    add("--augment", "mild rotation/zoom/shift and brightness/contrast/gamma jitter", action=flag)
    add("--hflip", "random left-right flips", action=flag)
    add("--normalize", "input scaling after [0, 1]", choices=CHOICES["normalize"])
    add("--seed", "seed of init, validation patients, order and augmentation", type=int)
    add("--device", "where to train", choices=("auto", "cuda", "cpu"))
    add("--precision", "auto: bf16 on CUDA when supported, else fp16 + GradScaler; fp32 on CPU",
        choices=CHOICES["precision"])  # fmt: skip
    add("--channels-last", "NHWC memory layout", action=flag)
    add("--compile", "torch.compile the model", action=flag)
    add("--deterministic", "deterministic kernels only, an op without one stops the run (bit-exact reruns, slower)",
        action=flag)  # fmt: skip
    add("--workers", "DataLoader worker processes per training process", type=int)
    add("--eval-batch-size", "images per validation forward pass", type=int)
    add("--no-progress", "no progress bars", dest="progress", action="store_false")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train fit``."""
    args = vars(_parser().parse_args(argv))
    resume = args.pop("resume")
    given = {key: value for key, value in args.items() if value is not None}
    try:
        if resume:
            check_resume_options(given)
            fit(dataclasses.replace(TrainConfig(), **{k: v for k, v in given.items() if k != "recipe"}), resume=True)
        else:
            fit(make_config(given.pop("recipe", "default"), **given))
    except (TrainError, DataError, CacheError, ConfigError, ckpt.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
