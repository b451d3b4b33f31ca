"""``python -m train prepare``: decode and letterbox every image once into the uint8 cache.

Decoding a 1024² NIH PNG costs about 10 ms per core; reading a prepared row costs microseconds, so
after this step training is bound by the GPU, not by PNG decoding. Images go through exactly the
functions inference uses (:func:`cxr.io.load_image`, :func:`cxr.preprocess.fit_to_square`), on all
cores, and an interrupted run picks up where it stopped.

Images are found in every layout people have: NIH's archives as downloaded (``images_NN.tar.gz``, read in
place), NIH's extracted ``images/``, Kaggle's ``images_001/images/...``, or one flat folder.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.pool
import os
import shlex
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cxr.config import ModelConfig
from cxr.io import InvalidImageError, load_image
from cxr.preprocess import fit_to_square
from train.data.archives import find_archived_images, read_images
from train.data.cache import CacheError, ImageCache, default_cache_dir
from train.data.nih import find_data_entry, find_images, read_data_entry

FLUSH_EVERY = 1000  # rows between flushes of the memory maps
IN_FLIGHT = 32  # images handed to each process ahead of the results (bounds the memory archives take)

Task = tuple[int, str, "str | bytes", int]  # cache row, image name, file path or file bytes, image size


def prepare_image(source: str | Path | bytes, image_size: int) -> np.ndarray:
    """One image (a path or a file's bytes) -> (S, S) uint8: ``round(255 * fit_to_square(load_image(source), S))``."""
    square = fit_to_square(load_image(source), image_size)
    return np.rint(square * 255.0).astype(np.uint8)


def _init_worker() -> None:
    torch.set_num_threads(1)  # one image per process; parallelism comes from the processes


def _work(task: Task) -> tuple[int, np.ndarray | str]:
    row, name, source, image_size = task
    try:
        return row, prepare_image(source, image_size)
    except InvalidImageError as err:
        return row, f"{name}: {err}"


def open_or_create(cache_dir: Path, names: list[str], image_size: int) -> ImageCache:
    """Reopen a cache for the same images and size (to resume), or allocate a new one."""
    try:
        cache = ImageCache.open(cache_dir, writable=True)
    except CacheError:
        return ImageCache.create(cache_dir, names, image_size)
    if cache.image_size != image_size or cache.names != names:
        raise CacheError(
            f"{cache_dir} holds a cache of {len(cache)} images at {cache.image_size} px, not this Data_Entry at "
            f"{image_size} px; choose another --cache-dir or delete that folder."
        )
    return cache


def prepare_command(
    data_dir: str | Path, image_size: int, cache_dir: str | Path | None = None, available_only: bool = False
) -> str:
    """The exact ``python -m train prepare`` command that fills the cache a run at ``image_size`` reads."""
    words = ["python", "-m", "train", "prepare", "--data-dir", str(data_dir), "--image-size", str(image_size)]
    if cache_dir:
        words += ["--cache-dir", str(cache_dir)]
    if available_only:
        words.append("--available-only")
    return shlex.join(words)


def prepare(
    data_dir: str | Path,
    image_size: int = ModelConfig().image_size,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    available_only: bool = False,
) -> tuple[ImageCache, list[str]]:
    """Fill the cache for every Data_Entry image (with ``available_only``, every one found under ``data_dir``).

    Returns:
        The cache, and messages for the images that could not be prepared (missing or undecodable).
    """
    data_dir = Path(data_dir)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(data_dir, image_size)
    names = [record.image for record in read_data_entry(find_data_entry(data_dir))]
    files = find_images(data_dir)
    archived = {name: archive for name, archive in find_archived_images(data_dir).items() if name not in files}
    missing = [name for name in names if name not in files and name not in archived]
    if available_only:
        names = [name for name in names if name in files or name in archived]
        if not names:
            raise CacheError(f"No image listed in Data_Entry is under {data_dir}.")
    elif missing:
        # Checked before the cache is allocated: a cache for the whole list would be refused by a later
        # --available-only run (other names), and would hold mostly empty rows.
        raise CacheError(
            f"{len(missing):,} of {len(names):,} images listed in Data_Entry are not under {data_dir} "
            f"(e.g. {missing[0]}). Add them (python -m train download), or add --available-only to prepare, fit "
            f"and evaluate the {len(names) - len(missing):,} at hand."
        )
    cache = open_or_create(cache_dir, names, image_size)
    todo = cache.not_ready(names)
    problems: list[str] = []
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(names), initial=len(names) - len(todo), unit="img", disable=not progress)
    try:
        tasks = _tasks(cache, todo, files, archived, image_size)
        for count, (row, result) in enumerate(_results(tasks, workers), start=1):
            if isinstance(result, str):
                problems.append(result)
            else:
                cache.write(row, result)
            if count % FLUSH_EVERY == 0:
                cache.flush()
            bar.update()
    finally:
        cache.flush()
        bar.close()
    return cache, problems


def _tasks(
    cache: ImageCache, todo: list[str], files: dict[str, Path], archived: dict[str, Path], image_size: int
) -> Iterator[Task]:
    """The images still to prepare: files first, then each archive read through once for its share."""
    for name in todo:
        if name in files:
            yield cache.row(name), name, str(files[name]), image_size
    for archive in sorted({archived[name] for name in todo if name in archived}):
        wanted = {name for name in todo if archived.get(name) == archive}
        for name, data in read_images(archive, wanted):
            yield cache.row(name), name, data, image_size


def _results(tasks: Iterable[Task], workers: int) -> Iterator[tuple[int, np.ndarray | str]]:
    """Prepared images in task order; at most ``IN_FLIGHT`` per process wait, so archives stream in bounded memory."""
    if workers == 1:
        yield from map(_work, tasks)
        return
    # Workers come from a fresh forkserver process, never forked from the caller: a caller with thread pools
    # running (OpenMP, OpenVINO, a web server, a notebook's) can crash or deadlock when forked.
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers, initializer=_init_worker) as pool:
        pending: deque[multiprocessing.pool.AsyncResult] = deque()
        for task in tasks:
            pending.append(pool.apply_async(_work, (task,)))
            if len(pending) >= IN_FLIGHT * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train prepare",
        description="Decode and letterbox every image listed in Data_Entry once, into a uint8 cache at the "
        "model's input size. Resumable: run it again after an interruption.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="NIH root (Data_Entry csv, image folders)")
    parser.add_argument("--image-size", type=int, default=ModelConfig().image_size, help="model input side (512)")
    parser.add_argument("--cache-dir", type=Path, help="where to write the cache (default DATA_DIR/cache-SIZE)")
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument(
        "--available-only",
        action="store_true",
        help="prepare only the Data_Entry images found under DATA_DIR (part of the release); without it, "
        "every missing image is an error",
    )
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train prepare``; exit status 1 if some image could not be prepared."""
    args = _parser().parse_args(argv)
    try:
        cache, problems = prepare(
            args.data_dir, args.image_size, args.cache_dir, args.workers, available_only=args.available_only
        )
    except (CacheError, ValueError) as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    for message in problems[:20]:
        print(f"not prepared: {message}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} of {len(cache)} images are not in the cache (shown above, up to 20).", file=sys.stderr)
        return 1
    print(f"cache ready: {len(cache)} images at {cache.image_size} px in {cache.folder}")
    return 0
