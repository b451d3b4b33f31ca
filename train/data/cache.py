"""The prepared image cache: every image decoded and letterboxed once, stored as uint8 at the model's size.

Layout of a cache folder (written by ``python -m train prepare``)::

    cache.json    format, image size, the image names in row order
    images.npy    (N, S, S) uint8, row i = round(255 * fit_to_square(load_image(names[i]), S))
    done.npy      (N,) uint8, 1 once row i is written (so an interrupted prepare resumes)

Rows are read through a memory map, so a DataLoader worker costs no copy of the whole cache, and
reading an image is a 256 KiB memcpy instead of a 1024² PNG decode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT = 1
INDEX_FILE = "cache.json"
IMAGES_FILE = "images.npy"
DONE_FILE = "done.npy"


class CacheError(RuntimeError):
    """A cache folder that is missing, incomplete or built for something else."""


def default_cache_dir(data_dir: str | Path, image_size: int) -> Path:
    """Where ``prepare`` puts the cache unless told otherwise: ``DATA_DIR/cache-SIZE``."""
    return Path(data_dir) / f"cache-{image_size}"


class ImageCache:
    """A folder of prepared images, read (or, in ``prepare``, written) through memory maps.

    The maps are opened lazily in each process and dropped when pickled, so the object can be
    handed to DataLoader workers under any start method.
    """

    def __init__(self, folder: str | Path, names: Sequence[str], image_size: int, writable: bool = False) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        self.image_size = int(image_size)
        self.writable = writable
        self._row = {name: i for i, name in enumerate(self.names)}
        self._images: np.ndarray | None = None
        self._done: np.ndarray | None = None

    @classmethod
    def create(cls, folder: str | Path, names: Sequence[str], image_size: int) -> ImageCache:
        """Allocate an empty cache; ``cache.json`` is written last, so a half-made cache is never opened."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shape = (len(names), image_size, image_size)
        np.lib.format.open_memmap(folder / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=shape).flush()
        np.save(folder / DONE_FILE, np.zeros(len(names), dtype=np.uint8))
        index = {"format": CACHE_FORMAT, "image_size": image_size, "preprocess": "cxr.preprocess.fit_to_square"}
        tmp = folder / f".{INDEX_FILE}.tmp"
        tmp.write_text(json.dumps({**index, "names": list(names)}) + "\n", encoding="utf-8")
        os.replace(tmp, folder / INDEX_FILE)
        return cls(folder, names, image_size, writable=True)

    @classmethod
    def open(cls, folder: str | Path, writable: bool = False) -> ImageCache:
        """Open a cache written by ``prepare``; raises :class:`CacheError` with advice if there is none."""
        folder = Path(folder)
        try:
            index: dict[str, Any] = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CacheError(f"No prepared cache in {folder}: run `python -m train prepare` first.") from None
        except (OSError, json.JSONDecodeError) as err:
            message = f"{folder / INDEX_FILE} is unreadable ({err}); delete {folder} and prepare again."
            raise CacheError(message) from None
        if index.get("format") != CACHE_FORMAT:
            raise CacheError(f"{folder} holds a cache of format {index.get('format')}; prepare it again.")
        return cls(folder, index["names"], index["image_size"], writable=writable)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None, "_done": None}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._row

    def row(self, name: str) -> int:
        """Row index of an image name."""
        try:
            return self._row[name]
        except KeyError:
            raise CacheError(f"{name} is not in the cache at {self.folder}.") from None

    @property
    def images(self) -> np.ndarray:
        """The (N, S, S) uint8 memory map."""
        if self._images is None:
            self._images = np.load(self.folder / IMAGES_FILE, mmap_mode="r+" if self.writable else "r")
        return self._images

    @property
    def done(self) -> np.ndarray:
        """The (N,) uint8 completion flags."""
        if self._done is None:
            self._done = np.load(self.folder / DONE_FILE, mmap_mode="r+" if self.writable else "r")
        return self._done

    def read(self, row: int) -> np.ndarray:
        """A copy of one prepared image, (S, S) uint8."""
        return np.array(self.images[row])

    def write(self, row: int, square: np.ndarray) -> None:
        """Store one prepared image, then mark it done (in that order, so a flag never outruns its pixels)."""
        self.images[row] = square
        self.done[row] = 1

    def not_ready(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are absent from the cache or not yet written."""
        done = self.done
        return [name for name in names if name not in self._row or not done[self._row[name]]]

    def flush(self) -> None:
        """Push written rows and flags to disk."""
        for array in (self._images, self._done):
            if isinstance(array, np.memmap):
                array.flush()
