"""Training loader throughput: decoding PNGs on the fly vs reading the prepared uint8 cache.

    python bench/loader_speed.py --images ../shared/data/samples/nih --image-size 512 --workers 0 1 2

Both loaders yield what training consumes, (N, S, S) uint8 batches: the PNG loader runs
``train.data.prepare.prepare_image`` (cxr.io.load_image + fit_to_square) per item, as training would
without ``prepare``; the cache loader is ``train.data.dataset.CachedDataset``. The few sample images are
cycled, so the cache is served from the page cache (as a warm cache on a fast SSD would be).
Prints a Markdown table of images/s per worker count.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from cxr.labels import CHESTXRAY14_LABELS
from train.data.cache import ImageCache
from train.data.dataset import CachedDataset
from train.data.nih import Record, find_images
from train.data.prepare import prepare_image


class PngDataset(Dataset):
    """Decode and letterbox each image when it is asked for."""

    def __init__(self, paths: list[Path], image_size: int) -> None:
        self.paths = paths
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(prepare_image(self.paths[i], self.image_size)), i  # images first, as CachedDataset


def images_per_second(dataset: Dataset, workers: int, items: int, batch_size: int) -> float:
    """Iterate ``items`` random items (with replacement) and return the rate, after one warm-up batch."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=items + batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    batches = iter(loader)
    next(batches)  # worker start-up is not throughput
    start = time.perf_counter()
    count = sum(len(images) for images, *_ in batches)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of NIH PNGs (any layout)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--png-items", type=int, default=64, help="images read per PNG measurement")
    parser.add_argument("--cache-items", type=int, default=4096, help="images read per cache measurement")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per worker, as in training

    files = find_images(args.images)
    names = sorted(files)
    paths = [files[name] for name in names]
    records = [Record(name, 0, (), None, "M", "PA") for name in names]
    with tempfile.TemporaryDirectory() as tmp:
        cache = ImageCache.create(tmp, names, args.image_size)
        for row, path in enumerate(paths):
            cache.write(row, prepare_image(path, args.image_size))
        cache.flush()
        cached = CachedDataset(ImageCache.open(tmp), records, CHESTXRAY14_LABELS)
        png = PngDataset(paths, args.image_size)
        print(f"{len(names)} images from {args.images}, {args.image_size} px, batch {args.batch_size}, "
              f"{os.cpu_count()} CPU cores\n")  # fmt: skip
        print("| workers | PNG decode + letterbox (img/s) | prepared cache (img/s) | ratio |")
        print("|---:|---:|---:|---:|")
        for workers in args.workers:
            png_rate = images_per_second(png, workers, args.png_items, args.batch_size)
            cache_rate = images_per_second(cached, workers, args.cache_items, args.batch_size)
            print(f"| {workers} | {png_rate:,.0f} | {cache_rate:,.0f} | {cache_rate / png_rate:,.0f}x |")


if __name__ == "__main__":
    main()
