"""The training loop: train CXRNet on NIH ChestX-ray14 (or a ``synth`` dataset), export the best epoch.

Read ``_fit`` top to bottom: setup (run folder, memory plan, data, model, resume), then the loop, each
epoch ending in validation, a checkpoint and the exported folder. Around it, one job per module: the
config and its recipes (``train.fitting.config``), run.json and resuming (``train.fitting.runs``), an epoch's
validation record and the export (``train.fitting.validation``), the command line (``train.fitting.cli``).
One process, or several with the same code::

    python -m train fit --data-dir NIH --out runs/r50
    torchrun --nproc-per-node 8 -m train fit --data-dir NIH --out runs/r50
    python -m train fit --out runs/r50 --resume          # continue an interrupted run

A run folder holds ``checkpoints/epoch-NNNN.safetensors`` (the newest and the best are kept) and
``weights/``: the best epoch as a cxr weights folder, with ``split.json``, ``metrics.jsonl`` and
``curves.png`` next to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from cxr.config import ModelConfig
from cxr.labels import label_set
from cxr.model import CXRNet, create_trunk, pretrained_mean_std
from train.data.archives import images_at_hand
from train.data.augment import Augmentation
from train.data.cache import INDEX_FILE, ImageCache, default_cache_dir
from train.data.dataset import CachedDataset, to_model_input
from train.data.nih import SPLIT_FILE, dataset_name, official_split, write_split
from train.data.prepare import prepare_command
from train.fitting import checkpoint as ckpt
from train.fitting import distributed, memory
from train.fitting.config import NORMALIZATION, RUNTIME_FIELDS, TrainConfig, TrainError
from train.fitting.inference import predict_logits
from train.fitting.losses import batch_pos_weight, class_pos_weight, wang_betas, wang_weighted_bce
from train.fitting.runs import latest_state, run_config, write_run_config
from train.fitting.validation import auroc_text, epoch_line, epoch_record, score, sync_exports


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
    cfg = run_config(cfg, resume, world)
    state = latest_state(checkpoints, world) if resume else None
    log = print if world.is_main else _silent
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    set_determinism(cfg.deterministic)
    amp_dtype = _amp_dtype(cfg.precision, device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    cfg = _plan_memory(cfg, device, amp_dtype, world, log)

    # -- data: the official split, read from the prepared cache -----------------------------------
    labels = label_set(cfg.labels)
    available = images_at_hand(cfg.data_dir) if cfg.available_only else None
    split = official_split(cfg.data_dir, cfg.val_fraction, cfg.seed, available)
    cache = _open_cache(cfg, [record.image for record in split.train + split.val])
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
    normalization = pretrained_mean_std(cfg.trunk) if cfg.pretrained else NORMALIZATION[cfg.normalize]
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
        write_run_config(cfg, out)
        weights_dir.mkdir(parents=True, exist_ok=True)
        write_split(split, weights_dir / SPLIT_FILE, val_fraction=cfg.val_fraction, seed=cfg.seed)
        sync_exports(history, best_epoch, checkpoints, weights_dir, model_config, training_info)
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
            betas = wang_betas(targets, world) if cfg.pos_weight == "wang" else None  # over the whole batch
            # Micro-batches are interleaved (every accum_steps-th image), so accumulating A of them sees
            # the very images that A DDP ranks would: runs compare across process counts.
            for micro in range(cfg.accum_steps):
                chunk = slice(micro, None, cfg.accum_steps)
                last = micro == cfg.accum_steps - 1
                no_sync = train_model.no_sync() if world.distributed and not last else contextlib.nullcontext()
                with no_sync:  # DDP averages gradients over ranks once, after the last micro-batch
                    with _autocast(device, amp_dtype):
                        logits = train_model(x[chunk])
                    if betas is None:
                        loss = F.binary_cross_entropy_with_logits(logits.float(), targets[chunk], pos_weight=pos_weight)
                    else:
                        loss = wang_weighted_bce(logits.float(), targets[chunk], *betas)
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
        record = epoch_record(epoch, logits, val_set, train_loss, lr, seconds, steps_per_epoch * cfg.batch_size)
        history.append(record)
        if best_epoch == 0 or score(record) > score(history[best_epoch - 1]):
            best_epoch = epoch
        log(epoch_line(record, cfg.epochs, best=best_epoch == epoch))

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
            sync_exports(history, best_epoch, checkpoints, weights_dir, model_config, training_info)
        distributed.barrier(world)
    best = auroc_text(history[best_epoch - 1]["val_mean_auroc"])
    log(f"best epoch {best_epoch} (val mean AUROC {best}): {weights_dir}")
    return weights_dir


def _plan_memory(
    cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None, world: distributed.World, log: Any
) -> TrainConfig:
    """Settle ``accum_steps`` (0: the fewest micro-batches that fit) and refuse a run that would run out of memory.

    Runs before any data is read, so an impossible setting fails in seconds, with the option to change.
    """
    sharing = world.size if device.type == "cpu" else 1  # CPU processes share one machine's memory
    budget = int(memory.SHARE * memory.free_memory(device) / sharing)
    footprint = memory.footprint(cfg.trunk, cfg.image_size, amp_dtype)
    what = f"{cfg.trunk} at {cfg.image_size} px, {_precision_name(amp_dtype)}"
    batch = cfg.batch_size // world.size
    try:
        steps = memory.plan_accum_steps(footprint, batch, cfg.accum_steps, cfg.eval_batch_size, device, budget, what)
    except memory.DoesNotFit as err:
        raise TrainError(str(err)) from None
    peak = footprint.train_peak(batch // steps, device.type)
    log(f"memory: about {memory.gib(peak)} per step (estimated; {steps} micro-batch(es) of {batch // steps} "
        f"images), {memory.gib(budget)} to spare on {device}")  # fmt: skip
    return dataclasses.replace(cfg, accum_steps=steps)


def _open_cache(cfg: TrainConfig, names: list[str]) -> ImageCache:
    """The prepared cache holding ``names``; if it is missing, at another size or short of images, the exact
    ``prepare`` command that makes it."""
    folder = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(cfg.data_dir, cfg.image_size)
    command = prepare_command(cfg.data_dir, cfg.image_size, cfg.cache_dir or None, cfg.available_only)
    if not (folder / INDEX_FILE).is_file():
        raise TrainError(f"No prepared cache in {folder}: run `{command}` first.")
    cache = ImageCache.open(folder)
    if cache.image_size != cfg.image_size:
        raise TrainError(
            f"The cache in {folder} is at {cache.image_size} px and the model at {cfg.image_size}: give "
            f"--image-size {cache.image_size}, or prepare another --cache-dir with `{command}`."
        )
    missing = cache.not_ready(names)
    if missing:
        subset = "" if cfg.available_only else "; or, to train on the images at hand only, add --available-only"
        raise TrainError(
            f"{len(missing):,} of the {len(names):,} training and validation images are not in the prepared cache "
            f"in {folder} (e.g. {missing[0]}): run `{command}` first{subset}."
        )
    return cache


def set_determinism(enabled: bool) -> None:
    """With ``enabled``, every kernel must be deterministic: an op without a deterministic version stops the
    run with PyTorch's error naming it (instead of a warning), so ``--deterministic`` reruns are bit-exact."""
    torch.backends.cudnn.benchmark = not enabled
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible GEMMs
    torch.use_deterministic_algorithms(enabled, warn_only=False)


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
