"""``python -m train fit``: train CXRNet on NIH ChestX-ray14 (or a ``synth`` dataset), export the best epoch.

Read it top to bottom: the config with its recipes, then ``fit`` (setup, resume, the loop,
validation, checkpoint, export). One process, or several with the same code::

    python -m train fit --data-dir NIH --out runs/r50
    torchrun --nproc-per-node 8 -m train fit --data-dir NIH --out runs/r50
    python -m train fit --out runs/r50 --resume          # continue an interrupted run

A run folder holds ``checkpoints/epoch-NNNN.safetensors`` (the newest and the best are kept) and
``weights/``: the best epoch as a cxr weights folder, with ``split.json``, ``metrics.jsonl`` and
``curves.png`` next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from cxr.config import IMAGENET_MEAN, IMAGENET_STD, ConfigError, ModelConfig
from cxr.labels import LABEL_SETS, label_set
from cxr.model import CXRNet, create_trunk
from train import checkpoint as ckpt
from train import distributed
from train.archives import images_at_hand
from train.augment import Augmentation
from train.cache import CacheError, ImageCache, default_cache_dir
from train.data import DataError, dataset_name, official_split, write_split
from train.dataset import CachedDataset, to_model_input
from train.export import CURVES_PLOT, METRICS_LOG, SPLIT_FILE, export_weights, exported_epoch, write_metrics_log
from train.inference import predict_logits
from train.losses import batch_pos_weight, class_pos_weight
from train.metrics import choose_thresholds, json_number, mean_auroc, per_label_auroc
from train.plots import plot_curves


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
    accum_steps: int = 1  # micro-batches per optimizer step (gradient accumulation)
    optimizer: str = "adamw"  # adamw (decoupled weight decay) or adam
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.01  # on conv and linear weights; never on biases or norm layers
    warmup_epochs: float = 1.0  # linear warm-up from lr/steps to lr
    schedule: str = "cosine"  # cosine (down to min_lr_ratio * lr) or constant
    min_lr_ratio: float = 0.01  # final learning rate of the cosine schedule, relative to lr
    pos_weight: str = "class-sqrt"  # class-sqrt: sqrt(#neg/#pos) per label; batch: #neg/#pos per batch; none
    augment: bool = True  # mild rotation/zoom/shift and brightness/contrast/gamma jitter
    hflip: bool = False  # left-right flips: off, they turn normal anatomy into dextrocardia
    normalize: str = "imagenet"  # imagenet: the trunk's mean/std; none: plain [0, 1] (ToTensor)
    # system
    seed: int = 0  # model init, validation patients, sampling order, augmentation
    device: str = "auto"  # auto (CUDA when available), cuda or cpu
    precision: str = "auto"  # auto: bf16 on CUDA if supported, else fp16 + GradScaler; fp32 on CPU
    channels_last: bool = True  # NHWC memory layout (faster convolutions with tensor cores)
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # deterministic kernels: bit-exact GPU reruns, somewhat slower
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
        "pos_weight": "batch",
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
    "pos_weight": ("class-sqrt", "batch", "none"),
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
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.accum_steps < 1 or cfg.lr <= 0:
        raise TrainError("--epochs, --batch-size, --accum-steps and --lr must be positive.")
    if not cfg.data_dir:
        raise TrainError("--data-dir is required (the folder with Data_Entry and the split lists).")
    return cfg


def get_lr(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then constant or cosine."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    total = cfg.epochs * steps_per_epoch
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train (or continue training) and return the exported weights folder."""
    world, device = distributed.setup(cfg.device)
    try:
        return _fit(cfg, resume, world, device)
    finally:
        distributed.teardown()


def _fit(cfg: TrainConfig, resume: bool, world: distributed.World, device: torch.device) -> Path:
    # -- run folder: its config (run.json, written once setup works) and the checkpoint to resume from --
    out = Path(cfg.out)
    checkpoints, weights_dir = out / "checkpoints", out / "weights"
    cfg = _run_config(cfg, resume, world)
    state = _latest_state(checkpoints, world) if resume else None
    log = print if world.is_main else _silent
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
        torch.use_deterministic_algorithms(True, warn_only=True)
    amp_dtype = _amp_dtype(cfg.precision, device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    # -- data: the official split, read from the prepared cache -----------------------------------
    labels = label_set(cfg.labels)
    available = images_at_hand(cfg.data_dir) if cfg.available_only else None
    split = official_split(cfg.data_dir, cfg.val_fraction, cfg.seed, available)
    cache = ImageCache.open(cfg.cache_dir or default_cache_dir(cfg.data_dir, cfg.image_size))
    if cache.image_size != cfg.image_size:
        raise TrainError(f"The cache in {cache.folder} is at {cache.image_size} px, the model at {cfg.image_size}.")
    train_set, val_set = CachedDataset(cache, split.train, labels), CachedDataset(cache, split.val, labels)
    if cfg.batch_size % (world.size * cfg.accum_steps):
        raise TrainError(f"--batch-size {cfg.batch_size} must divide into {world.size} processes x {cfg.accum_steps}.")
    sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(
        train_set, batch_size=cfg.batch_size // world.size, sampler=sampler, num_workers=cfg.workers,
        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=cfg.workers > 0,
    )  # fmt: skip
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise TrainError(f"The training split has {len(train_set)} images, fewer than one batch ({cfg.batch_size}).")
    augmentation = Augmentation(hflip=cfg.hflip) if cfg.augment else None
    class_weight = class_pos_weight(train_set.targets).to(device) if cfg.pos_weight == "class-sqrt" else None

    # -- model and optimizer ----------------------------------------------------------------------
    normalization = NORMALIZATION[cfg.normalize]
    model_config = ModelConfig(labels=labels, trunk=cfg.trunk, image_size=cfg.image_size, **normalization)
    model = CXRNet(model_config)
    if cfg.pretrained and state is None:
        _load_imagenet_trunk(model, cfg.trunk)
    model.to(device, memory_format=memory_format)
    decay = [p for p in model.parameters() if p.ndim >= 2]  # conv kernels and linear weights
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and norm scales/shifts
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = optimizer_class(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, start_epoch, history, best_epoch = 0, 1, [], 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        if state["scheduler"]["steps_per_epoch"] != steps_per_epoch:
            raise TrainError(
                f"The training split changed since this run started ({steps_per_epoch} steps per epoch, "
                f"was {state['scheduler']['steps_per_epoch']}): resuming would bend its schedule. Start a new run."
            )
        step, history, best_epoch = state["scheduler"]["step"], state["history"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        log(f"resuming {out} after epoch {state['epoch']} (best so far: epoch {best_epoch})")
    elif resume:
        log(f"no checkpoint in {checkpoints} yet: starting {out} from the beginning")
    compiled = torch.compile(model) if cfg.compile else model
    device_ids = [device.index] if device.type == "cuda" else None
    train_model = DistributedDataParallel(compiled, device_ids=device_ids) if world.distributed else compiled

    # -- what the exported folder records about this run -------------------------------------------
    training_info = {
        "dataset": dataset_name(cfg.data_dir),
        "recipe": cfg.recipe,
        "hyperparameters": _hyperparameters(cfg, augmentation, amp_dtype, world),
        "epochs": cfg.epochs,
        "images": {name: len(records) for name, records in split.parts()},
        "patients": {name: len({r.patient_id for r in records}) for name, records in split.parts()},
        "data_subset": split.subset,
        "seed": cfg.seed,
        "pretrained_trunk": cfg.pretrained,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "split": SPLIT_FILE,
    }
    if world.is_main:
        _write_run_config(cfg, out)
        weights_dir.mkdir(parents=True, exist_ok=True)
        write_split(split, weights_dir / SPLIT_FILE, val_fraction=cfg.val_fraction, seed=cfg.seed)
        _sync_exports(history, best_epoch, checkpoints, weights_dir, model_config, training_info)
    log(f"training on {len(train_set)} images ({steps_per_epoch} steps of {cfg.batch_size}), validating on "
        f"{len(val_set)}; {world.size} process(es) on {device}, {_precision_name(amp_dtype)}")  # fmt: skip

    # -- the loop ---------------------------------------------------------------------------------
    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=device)
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch * cfg.batch_size, unit="img", desc=f"epoch {epoch}/{cfg.epochs}",
            disable=not (world.is_main and cfg.progress), dynamic_ncols=True,
        )  # fmt: skip
        for done, (images, targets, index) in enumerate(loader, start=1):
            lr = get_lr(step, cfg, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            rows = train_set.rows[index.numpy()]
            jitter = (augmentation, augmentation.sample(rows, epoch, cfg.seed)) if augmentation else None
            x = to_model_input(images, model_config, jitter, memory_format)
            pos_weight = batch_pos_weight(targets, world) if cfg.pos_weight == "batch" else class_weight
            # Micro-batches are interleaved (every accum_steps-th image), so accumulating A of them sees
            # the very images that A DDP ranks would: runs compare across process counts.
            for micro in range(cfg.accum_steps):
                chunk = slice(micro, None, cfg.accum_steps)
                last = micro == cfg.accum_steps - 1
                no_sync = train_model.no_sync() if world.distributed and not last else contextlib.nullcontext()
                with no_sync:  # DDP averages gradients over ranks once, after the last micro-batch
                    with _autocast(device, amp_dtype):
                        logits = train_model(x[chunk])
                    loss = F.binary_cross_entropy_with_logits(logits.float(), targets[chunk], pos_weight=pos_weight)
                    scaler.scale(loss / cfg.accum_steps).backward()
                loss_sum += loss.detach() / cfg.accum_steps
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(cfg.batch_size)
            if done % 10 == 0:  # .item() waits for the GPU: not every step
                bar.set_postfix(loss=f"{loss_sum.item() / done:.4f}", lr=f"{lr:.2e}")
        bar.close()
        seconds = time.perf_counter() - started
        train_loss = distributed.all_reduce_sum(loss_sum, world).item() / (world.size * steps_per_epoch)

        # -- validation (all ranks take part and get the same numbers) ----------------------------
        _broadcast_buffers(model, world)  # BatchNorm running stats as on rank 0, which is what gets saved
        logits = predict_logits(
            compiled, val_set, model_config, device=device, batch_size=cfg.eval_batch_size, workers=cfg.workers,
            amp_dtype=amp_dtype, memory_format=memory_format, world=world,
        )  # fmt: skip
        record = _epoch_record(epoch, logits, val_set, train_loss, lr, seconds, steps_per_epoch * cfg.batch_size)
        history.append(record)
        if best_epoch == 0 or _score(record) > _score(history[best_epoch - 1]):
            best_epoch = epoch
        log(f"epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4f}, val loss {record['val_loss']:.4f}, "
            f"val mean AUROC {record['val_mean_auroc'] or float('nan'):.4f}"
            f"{' (best)' if best_epoch == epoch else ''}, {record['train_images_per_s']:.0f} img/s")  # fmt: skip

        # -- checkpoint, then the exported folder (derived from checkpoints, so a kill between them is harmless)
        if world.is_main:
            ckpt.save_checkpoint(
                ckpt.checkpoint_path(checkpoints, epoch),
                {
                    "config": dataclasses.asdict(cfg), "epoch": epoch, "best_epoch": best_epoch, "history": history,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    # the learning rate is get_lr(step): the step count is the scheduler's whole state
                    "scheduler": {"step": step, "steps_per_epoch": steps_per_epoch}, "rng": ckpt.rng_state(),
                },
            )  # fmt: skip
            log(f"saved checkpoint {ckpt.checkpoint_path(checkpoints, epoch)}")
            ckpt.prune(checkpoints, keep_epochs={epoch, best_epoch})
            _sync_exports(history, best_epoch, checkpoints, weights_dir, model_config, training_info)
        distributed.barrier(world)
    log(f"best epoch {best_epoch} (val mean AUROC {history[best_epoch - 1]['val_mean_auroc']}): {weights_dir}")
    return weights_dir


def _run_config(cfg: TrainConfig, resume: bool, world: distributed.World) -> TrainConfig:
    """A resumed run's saved config (runtime fields from ``cfg``); a new run's ``cfg``, if --out is free."""
    path = Path(cfg.out) / RUN_FILE
    if resume:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainError(f"No run to resume in {cfg.out} ({RUN_FILE} is missing).") from None
        return _resumed_config(saved, cfg)
    if path.exists():
        raise TrainError(f"{cfg.out} already holds a run: continue it with --resume, or choose another --out.")
    distributed.barrier(world)  # every rank has looked before rank 0 may write run.json
    return cfg


def _write_run_config(cfg: TrainConfig, out: Path) -> None:
    """Save the run's config as ``OUT/run.json``, once the data and model are known to work."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / RUN_FILE)


def _latest_state(checkpoints: Path, world: distributed.World) -> dict[str, Any] | None:
    """The newest readable checkpoint's state (None: start from scratch); every rank loads the same file."""
    found = ckpt.latest_checkpoint(checkpoints) if world.is_main else None
    path = distributed.broadcast_object(found[0] if found else None, world)
    if path is None:
        return None
    return found[1] if found else ckpt.load_checkpoint(path)


def _resumed_config(saved: dict[str, Any], given: TrainConfig) -> TrainConfig:
    """The saved config, with the run-independent fields of ``given`` (empty paths keep the saved ones)."""
    runtime = {field: getattr(given, field) for field in RUNTIME_FIELDS}
    runtime["data_dir"] = given.data_dir or saved["data_dir"]
    runtime["cache_dir"] = given.cache_dir or saved["cache_dir"]
    return validate(dataclasses.replace(TrainConfig(**saved), **runtime))


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for a precision setting (None: plain float32)."""
    if precision == "auto":
        if device.type != "cuda":
            return None  # CPU autocast is slower than fp32 on most CPUs without AMX
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _precision_name(amp_dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}[amp_dtype]


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()


def _load_imagenet_trunk(model: CXRNet, trunk: str) -> None:
    try:
        pretrained = create_trunk(trunk, pretrained=True)
    except OSError as err:
        raise TrainError(
            f"Could not load ImageNet weights for {trunk} ({type(err).__name__}). Without access to the Hugging Face "
            "Hub, put them in its cache (HF_HOME) first, or train from scratch with --no-pretrained."
        ) from err
    model.trunk.load_state_dict(pretrained.state_dict(), strict=True)


def _broadcast_buffers(model: torch.nn.Module, world: distributed.World) -> None:
    if world.distributed:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def _epoch_record(
    epoch: int, logits: np.ndarray, val_set: CachedDataset, train_loss: float, lr: float, seconds: float, images: int
) -> dict[str, Any]:
    """One line of metrics.jsonl: losses, validation AUROC per label and mean, thresholds, speed."""
    targets = val_set.targets
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    val_loss = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(targets)).item()
    aurocs = per_label_auroc(targets, probabilities)
    mean = mean_auroc(targets, probabilities)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_mean_auroc": json_number(mean),
        "val_auroc": {label: json_number(a) for label, a in zip(val_set.labels, aurocs, strict=True)},
        "thresholds": [float(t) for t in choose_thresholds(targets, probabilities)],
        "lr": lr,
        "train_seconds": seconds,
        "train_images_per_s": images / seconds,
    }


def _score(record: dict[str, Any]) -> float:
    return -math.inf if record["val_mean_auroc"] is None else record["val_mean_auroc"]


def _sync_exports(
    history: list[dict[str, Any]],
    best_epoch: int,
    checkpoints: Path,
    weights_dir: Path,
    model_config: ModelConfig,
    training_info: dict[str, Any],
) -> None:
    """Bring the exported folder in line with the checkpoints: log, curves, and the best epoch's weights."""
    for leftover in weights_dir.glob(".*.tmp*"):  # temporary files of a write that a kill interrupted
        leftover.unlink()
    if not history:
        return
    write_metrics_log(history, weights_dir / METRICS_LOG)
    plot_curves(history, weights_dir / CURVES_PLOT)
    if exported_epoch(weights_dir) == best_epoch:
        return
    best = history[best_epoch - 1]
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(checkpoints, best_epoch))["model"]
    info = {**training_info, "best_epoch": best_epoch, "val_mean_auroc": best["val_mean_auroc"],
            "val_auroc": best["val_auroc"]}  # fmt: skip
    export_weights(weights_dir, state, model_config, best["thresholds"], info)


def _hyperparameters(
    cfg: TrainConfig, augmentation: Augmentation | None, amp_dtype: torch.dtype | None, world: distributed.World
) -> dict[str, Any]:
    """The settings that shaped the weights (no paths or machine details)."""
    skip = RUNTIME_FIELDS | {"out", "recipe", "seed", "pretrained"}
    params = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    params["augment"] = dataclasses.asdict(augmentation) if augmentation else False
    params["precision"] = _precision_name(amp_dtype)
    params["processes"] = world.size
    return params


def _silent(*_: object) -> None:
    """Non-zero ranks print nothing."""


# -- command line ---------------------------------------------------------------------------------


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
    add("--accum-steps", "micro-batches per step (gradient accumulation)", type=int)
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
    add("--deterministic", "deterministic kernels (bit-exact GPU reruns, slower)", action=flag)
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
            _check_resume_options(given)
            fit(dataclasses.replace(TrainConfig(), **{k: v for k, v in given.items() if k != "recipe"}), resume=True)
        else:
            fit(make_config(given.pop("recipe", "default"), **given))
    except (TrainError, DataError, CacheError, ConfigError, ckpt.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _check_resume_options(given: dict[str, Any]) -> None:
    """On --resume the saved run decides; options that would change it (not where or how fast) are refused."""
    path = Path(given["out"]) / RUN_FILE
    if not path.is_file():
        return  # fit says there is no run to resume
    saved = json.loads(path.read_text(encoding="utf-8"))
    changed = [
        f"--{key.replace('_', '-')} (saved {saved.get(key)!r}, given {value!r})"
        for key, value in given.items()
        if key not in RUNTIME_FIELDS | {"out"} and saved.get(key) != value
    ]
    if changed:
        raise TrainError(f"--resume continues the saved run; these options differ from it: {', '.join(changed)}.")
