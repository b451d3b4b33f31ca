"""NIH's image archives (``images_NN.tar.gz``) read in place, so the 42 GB release never needs extracting.

A gzip stream cannot be indexed, so an archive is read front to back: once to list its images (the list is
kept next to it in ``.images_NN.tar.gz.names``, valid while the archive's size and time are unchanged), and
once by ``prepare``, which hands each image's bytes to its decoding processes as they come.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Collection, Iterator
from pathlib import Path

from train.data.nih import IMAGE_NAME, DataError, find_images

ARCHIVE_GLOB = "images_*.tar.gz"  # NIH's names (images_01.tar.gz ... images_12.tar.gz)


def find_archives(data_dir: str | Path) -> list[Path]:
    """The image archives anywhere under ``data_dir``, sorted by path."""
    return sorted(Path(data_dir).rglob(ARCHIVE_GLOB))


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The NIH-named image files of an open archive, in archive order."""
    for member in tar:
        if member.isfile() and IMAGE_NAME.match(Path(member.name).name):
            yield member


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r|gz")  # a stream: no seeking back through the gzip data
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"{path} is not a readable tar.gz archive ({err}).") from None


def archive_names(path: str | Path) -> list[str]:
    """Image names in an archive, from its ``.names`` list when that is current, else by reading it through."""
    path = Path(path)
    listing = path.with_name(f".{path.name}.names")
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        saved = json.loads(listing.read_text(encoding="utf-8"))
        if saved["stamp"] == stamp:
            return saved["names"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no list yet, or one from an older file: read the archive
    try:
        with _open(path) as tar:
            names = [Path(member.name).name for member in _members(tar)]
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{path} is damaged ({type(err).__name__}: {err}); download it again.") from None
    tmp = listing.with_name(f"{listing.name}.tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "names": names}) + "\n", encoding="utf-8")
    os.replace(tmp, listing)
    return names


def find_archived_images(data_dir: str | Path) -> dict[str, Path]:
    """Map NIH image names to the archive under ``data_dir`` that holds each (the same name twice is an error)."""
    found: dict[str, Path] = {}
    for archive in find_archives(data_dir):
        for name in archive_names(archive):
            if name in found:
                raise DataError(f"{name} is in both {found[name]} and {archive}.")
            found[name] = archive
    return found


def images_at_hand(data_dir: str | Path) -> set[str]:
    """Names of the NIH images under ``data_dir``, as files in any layout or inside archives."""
    return set(find_images(data_dir)) | set(find_archived_images(data_dir))


def read_images(path: str | Path, wanted: Collection[str]) -> Iterator[tuple[str, bytes]]:
    """(name, file bytes) of the images of one archive whose names are in ``wanted``, in archive order."""
    path = Path(path)
    try:
        with _open(path) as tar:
            for member in _members(tar):
                name = Path(member.name).name
                if name in wanted:
                    with tar.extractfile(member) as f:
                        yield name, f.read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{path} is damaged ({type(err).__name__}: {err}); download it again.") from None
