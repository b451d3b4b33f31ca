"""The one-machine engine: worker processes read, hash and decode files while the main process runs the model."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from cxr.scoring.inputs import ScoreInput
from cxr.scoring.work import CamWriter, LoadedImage, load_input, rows_for
from cxr.serving import ServedModel

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class _Inputs(Dataset):
    def __init__(self, items: Sequence[ScoreInput], done: set[tuple[str, str]]) -> None:
        self.items, self.done = list(items), done

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> LoadedImage:
        return load_input(self.items[i], self.done)


def _as_list(batch: list[LoadedImage]) -> list[LoadedImage]:
    return batch  # images differ in size: the predictor letterboxes them, not the collate


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)  # a decoder needs no intra-op threads; the cores belong to the forward pass
    if sys.platform == "linux":
        # Die with the main process: after a SIGKILL of it, a worker blocked writing a decoded image into the
        # result pipe would otherwise wait forever, orphaned.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the main process died before prctl took effect
            os._exit(1)


def default_workers(on_gpu: bool, cores: int | None = None) -> int:
    """Decoding processes when ``--workers`` is not given.

    On the CPU, none: the backend's threads already use every core, and a decoding process takes its share of
    them (``bench.score_speed`` on 2 cores: 1 worker gave 0.63-0.82x the images/s of decoding in the main process).
    On a GPU, one per spare core up to 8, so that decoding keeps up with the forward pass.
    """
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, min(8, cores - 1)) if on_gpu else 0


def local_batches(
    items: Sequence[ScoreInput],
    served: ServedModel,
    done: set[tuple[str, str]],
    *,
    batch_size: int,
    workers: int,
    cams: CamWriter | None = None,
) -> Iterator[tuple[int, list[dict]]]:
    """(inputs consumed, rows) per batch; with ``workers`` > 0 decoding runs ahead of the forward pass."""
    loader = DataLoader(
        _Inputs(items, done),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=_init_worker if workers else None,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
    for loaded in loader:
        yield len(loaded), rows_for(loaded, served, batch_size, cams)
