"""Peak memory of training and validation, estimated before the first step, so ``fit`` stops with advice
instead of being killed by the kernel (CPU) or failing with an out-of-memory error mid-epoch (GPU).

What one image's forward pass saves for backward is measured once on the CPU at a small size (under a second
even for resnet50) and scaled with the pixel count; a step then needs that times the micro-batch,
plus the weights, their gradients and the optimizer's two moments, plus allowances calibrated against peaks
measured on the CPU and on an H100 (README "Reproduce the model": the estimate is 0-16% above them).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr.config import ModelConfig
from cxr.model import CXRNet

GIB = 2**30
PROBE_SIZE = 64  # input side of the measuring pass; saved activations grow with the pixel count (within 0.2% at 512)
# Allocator slack and transient buffers on top of what is saved and stored: calibrated against peaks measured
# on the CPU (README) and on an H100 (resnet50, 512 px: fp32 batch 64 31.7 GiB, bf16 batch 64/128 14.4/28.5 GiB).
OVERHEAD = {"cpu": 1.1, "cuda": 1.15}
WORKSPACE = {"cpu": GIB // 4, "cuda": GIB // 2}  # convolution workspaces, the loss, the batch itself
PROCESS = {"cpu": int(0.7 * GIB), "cuda": 0}  # the Python process with torch loaded (CUDA: already outside "free")
SHARE = 0.9  # of the free memory, the most a run may plan to use
STATES = 4  # weights, gradients and Adam's two moments, each the size of the weights (fp32)


@dataclass(frozen=True)
class Footprint:
    """Memory facts of one trunk at one input size and precision, in bytes."""

    weights: int  # all parameters
    per_image: int  # saved for backward by one image's forward pass
    fixed: int  # saved once per step whatever the batch (autocast's low-precision copies of the weights)
    largest: int  # the largest single activation of one image (what inference holds at once)

    def train_peak(self, micro_batch: int, device_type: str) -> int:
        """Peak bytes of a training step on ``micro_batch`` images."""
        stored = STATES * self.weights + self.fixed + micro_batch * self.per_image
        return PROCESS[device_type] + WORKSPACE[device_type] + int(OVERHEAD[device_type] * stored)

    def eval_peak(self, batch: int, device_type: str) -> int:
        """Peak bytes of a validation forward pass (no gradients) on ``batch`` images: input, output, one more."""
        held = 3 * batch * self.largest
        return PROCESS[device_type] + WORKSPACE[device_type] + self.weights + int(OVERHEAD[device_type] * held)


def footprint(trunk: str, image_size: int, amp_dtype: torch.dtype | None) -> Footprint:
    """Measure saved activations with batches of 1 and 2 at :data:`PROBE_SIZE` px on the CPU, scaled to ``image_size``.

    The difference of the two batches is one image's share; the rest is saved once per step. Autocast runs in
    bfloat16 on the CPU, which saves as many bytes as float16 does on a GPU.
    """
    model = CXRNet(ModelConfig(trunk=trunk, image_size=PROBE_SIZE)).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: list[dict[int, int]] = [{}, {}]
    largest = 0

    def measure(batch: int) -> None:
        nonlocal largest

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal largest
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:  # weights are counted once, as states
                saved[batch - 1][storage.data_ptr()] = storage.nbytes()
                if batch == 1 and tensor.shape[:1] == (1,):
                    largest = max(largest, storage.nbytes())
            return tensor

        cast = torch.autocast("cpu", dtype=torch.bfloat16) if amp_dtype else contextlib.nullcontext()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), cast:
            model(torch.zeros(batch, 3, PROBE_SIZE, PROBE_SIZE))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a pass this small is slower on several threads of a busy machine
    try:
        measure(1)
        measure(2)
    finally:
        torch.set_num_threads(threads)
    one, two = (sum(sizes.values()) for sizes in saved)
    scale = (image_size / PROBE_SIZE) ** 2
    return Footprint(
        weights=sum(p.numel() * p.element_size() for p in model.parameters()),
        per_image=int((two - one) * scale),
        fixed=max(0, 2 * one - two),
        largest=int(largest * scale),
    )


class DoesNotFit(RuntimeError):
    """A run whose estimated peak exceeds the free memory; the message names the setting to change."""


def plan_accum_steps(
    fp: Footprint, batch: int, accum_steps: int, eval_batch: int, device: torch.device, budget: int, what: str
) -> int:
    """Micro-batches per step: ``accum_steps`` if it fits, or for 0 the fewest that fit in ``budget`` bytes.

    Args:
        fp: the trunk's footprint at the run's size and precision.
        batch: images per optimizer step in this process.
        accum_steps: the requested count, or 0 to choose.
        eval_batch: images per validation forward pass.
        device: where the run trains (its type picks the allowances).
        budget: bytes this process may use.
        what: the run in words for messages, e.g. "resnet50 at 512 px, fp32".

    Raises:
        DoesNotFit: with the estimate, the budget and the option(s) that would make it fit.
    """
    kind = device.type
    fitting = [a for a in range(1, batch + 1) if batch % a == 0 and fp.train_peak(batch // a, kind) <= budget]
    steps = accum_steps or (fitting[0] if fitting else 1)
    if batch % steps or fp.train_peak(batch // steps, kind) > budget:
        if fitting:
            advice = f"--accum-steps {fitting[0]} ({batch // fitting[0]} images per micro-batch, the same --batch-size)"
        else:
            advice = "a smaller --image-size (even one image per micro-batch does not fit)"
        precision = ", or --precision bf16" if kind == "cuda" and what.endswith("fp32") else ""
        raise DoesNotFit(
            f"A training step would need about {gib(fp.train_peak(batch // steps, kind))} ({what}, {batch // steps} "
            f"images per micro-batch) and {device} has {gib(budget)} to spare: use {advice}; or lower --batch-size "
            f"or --image-size{precision}."
        )
    if fp.eval_peak(eval_batch, kind) > budget:
        fitting_eval = next((b for b in range(eval_batch, 0, -1) if fp.eval_peak(b, kind) <= budget), 0)
        advice = f"--eval-batch-size {fitting_eval}" if fitting_eval else "a smaller --image-size"
        raise DoesNotFit(
            f"Validation would need about {gib(fp.eval_peak(eval_batch, kind))} ({what}, {eval_batch} images per "
            f"pass) and {device} has {gib(budget)} to spare: use {advice}."
        )
    return steps


def free_memory(device: torch.device) -> int:
    """Bytes a new allocation can use now: free GPU memory, or the kernel's MemAvailable on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def gib(size: int) -> str:
    """Bytes as GiB with one decimal."""
    return f"{size / GIB:.1f} GiB"
