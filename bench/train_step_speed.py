"""Training step throughput at the model's input size on synthetic tensors: fp32 vs bf16, channels_last, compile.

    python bench/train_step_speed.py                                   # GPU: resnet50, 512 px, batch 64
    python bench/train_step_speed.py --device cpu --batch-size 4 --steps 3 --modes fp32 fp32+cl

One step is what ``train.fitting.loop`` does per batch: uint8 batch -> ``to_model_input`` (augmentation and
normalisation on the device) -> forward -> weighted BCE -> backward -> AdamW step. Prints a Markdown
table of images/s per mode, with the device's name; compare it with bench/loader_speed.py (the
loader should deliver at least 3x what the step consumes).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
import torch.nn.functional as F

from cxr.config import ModelConfig
from cxr.model import CXRNet
from train.data.augment import Augmentation
from train.data.dataset import to_model_input

MODES = ("fp32", "fp32+cl", "bf16", "bf16+cl", "bf16+cl+compile")


def step_rate(mode: str, args: argparse.Namespace, device: torch.device) -> tuple[float, float | None]:
    """Images/s of training steps in one mode ("bf16", "+cl" channels_last, "+compile"), and the peak
    GPU memory in GiB that the steps allocated (None on CPU)."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    config = ModelConfig(trunk=args.trunk, image_size=args.image_size)
    memory_format = torch.channels_last if "+cl" in mode else torch.contiguous_format
    model = CXRNet(config).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    forward = torch.compile(model) if "compile" in mode else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in mode else contextlib.nullcontext()
    size, n = args.image_size, args.batch_size
    images = torch.randint(0, 256, (n, size, size), dtype=torch.uint8, device=device)
    targets = (torch.rand(n, config.num_labels, device=device) < 0.1).float()
    augmentation = Augmentation()
    params = augmentation.sample(range(n), epoch=0, seed=0)

    def step() -> None:
        x = to_model_input(images, config, (augmentation, params), memory_format)
        with autocast:
            logits = forward(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    rate = n * args.steps / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return rate, peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trunk", default="resnet50")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, cuDNN autotune)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"{args.trunk}, {args.image_size} px, batch {args.batch_size}, {args.steps} timed steps on {name}, "
          f"torch {torch.__version__}\n")  # fmt: skip
    print("| mode | images/s | peak GPU memory (GiB) |")
    print("|---|---:|---:|")
    for mode in args.modes:
        rate, peak = step_rate(mode, args, device)
        print(f"| {mode} | {rate:,.1f} | {'–' if peak is None else f'{peak:.1f}'} |", flush=True)


if __name__ == "__main__":
    main()
