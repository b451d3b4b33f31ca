"""Small NIH data folders built from the shared real images, in each layout people download."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from train.data.nih import TEST_LIST, TRAIN_VAL_LIST, read_split_list

LAYOUTS = ("nih-extracted", "kaggle", "archives", "flat")


def nih_archive(images: Sequence[Path]) -> bytes:
    """A tar.gz laid out like NIH's (``images/NAME.png``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in images:
            tar.add(path, arcname=f"images/{path.name}")
    return buffer.getvalue()


def small_nih(folder: Path, shared_data: Path, images: Sequence[Path], layout: str) -> Path:
    """A data folder holding ``images`` in ``layout``, with Data_Entry and the split lists cut down to them.

    Layouts: NIH's archives extracted (``images/``), Kaggle's (``images_001/images/``, two images per
    folder), NIH's archives as downloaded (``images_01.tar.gz``, two images each), or one flat folder.
    """
    nih = shared_data / "nih-cxr14"
    folder.mkdir(parents=True, exist_ok=True)
    names = {path.name for path in images}
    with gzip.open(nih / "Data_Entry_2017_v2020.csv.gz", "rt", encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    kept = [row for row in rows if row.split(",", 1)[0] in names]
    (folder / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    for listing in (TRAIN_VAL_LIST, TEST_LIST):
        listed = [name for name in read_split_list(nih / listing) if name in names]
        (folder / listing).write_text("\n".join(listed) + "\n", encoding="utf-8")
    pairs = [images[i : i + 2] for i in range(0, len(images), 2)]
    for number, pair in enumerate(pairs, start=1):
        if layout == "archives":
            (folder / f"images_{number:02d}.tar.gz").write_bytes(nih_archive(pair))
            continue
        target = {"nih-extracted": folder / "images", "kaggle": folder / f"images_{number:03d}" / "images"}
        target["flat"] = folder
        destination = target[layout]
        destination.mkdir(parents=True, exist_ok=True)
        for path in pair:
            shutil.copyfile(path, destination / path.name)
    return folder
