"""``python -m train download --to DIR``: NIH ChestX-ray14's 12 image archives and its metadata, checked.

Every file is fetched into ``NAME.part`` (resumed with an HTTP Range request after a dropped connection
or an interrupted run), checked against its SHA-256 and only then renamed to ``NAME``, so a file under its
final name is always complete and verified, and a rerun skips it. A checksum mismatch discards and
re-fetches that one file. The archives are not extracted: ``prepare`` reads ``images_NN.tar.gz`` directly
(measured as fast as reading the extracted PNGs, see the README), which saves 42 GB of disk.
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import http.client
import io
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

MANIFEST_ENV = "CXR_DOWNLOAD_MANIFEST"  # a CSV (file,url,sha256) that replaces the built-in list
CHUNK = 1 << 20  # bytes per read: large enough for speed, small enough for a smooth progress bar
RETRIES = 3  # attempts per file after a dropped connection (each resumes where the last stopped)
MARGIN = 1 << 30  # free space kept beyond the files themselves
RETRY_WAIT = 1.0  # seconds before the first retry; doubled for each further one
TIMEOUT = 60.0  # seconds without a byte before a connection counts as dropped


@dataclass(frozen=True)
class Item:
    """One file to fetch: its name in the target folder, where it comes from, and its SHA-256."""

    name: str
    url: str
    sha256: str


# The 12 image archives (about 42 GB), with the SHA-256 that NIH's own download script (batch_download_zips.py on
# https://nihcc.app.box.com/v/ChestXray-NIHCC) gives for each; copied from ../shared/data/nih-cxr14/ARCHIVES.csv.
NIH_ARCHIVES_CSV = """\
file,url,sha256
images_01.tar.gz,https://nihcc.box.com/shared/static/vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz,fd8e3542db6351ae9377779033f5d5c5f32fe50eb0830b519fbf1a7e791354b1
images_02.tar.gz,https://nihcc.box.com/shared/static/i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz,c849cfa5504b8cffb301952bf93d53d3d39d7d931bc88bb70427b4a67de0740a
images_03.tar.gz,https://nihcc.box.com/shared/static/f1t00wrtdk94satdfb9olcolqx20z2jp.gz,6a90a979850545e30ed3e9ba96de2f063db13aa2a3c22363820d3f70d8c882c8
images_04.tar.gz,https://nihcc.box.com/shared/static/0aowwzs5lhjrceb3qp67ahp0rd1l1etg.gz,1ca953ec37fe9c132ec49743f9651b707884c6c76e6e3a33853940c13372a385
images_05.tar.gz,https://nihcc.box.com/shared/static/v5e3goj22zr6h8tzualxfsqlqaygfbsn.gz,a058c365478454dc7395ee2897c2b63a3bf108739b857046838859227e42e743
images_06.tar.gz,https://nihcc.box.com/shared/static/asi7ikud9jwnkrnkj99jnpfkjdes7l6l.gz,9b00987d39e4c9e4ab18b7426db82197c043dacec5a827141446c3900d39d5dd
images_07.tar.gz,https://nihcc.box.com/shared/static/jn1b4mw4n6lnh74ovmcjb8y48h8xj07n.gz,7868b43798cf1bc9ae98d142644864b056e64edda3be12f7504f16485ac382ff
images_08.tar.gz,https://nihcc.box.com/shared/static/tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j.gz,823088934d0ea57b4a7384446560bcdb825e712932b69e8541a84acee10af447
images_09.tar.gz,https://nihcc.box.com/shared/static/upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj.gz,bdd5bfe76323b630f5f83a013a0f2f100d1b03fdaea25240844e8763c1e40a51
images_10.tar.gz,https://nihcc.box.com/shared/static/l6nilvfa9cg3s28tqv1qc1olm3gnz54p.gz,8f18699d3baad03cdf8946220a95e8d2bab555dc8e4be99e13bc0366a72aba1c
images_11.tar.gz,https://nihcc.box.com/shared/static/hhq8fkdgvcari67vfhs7ppg2w6ni4jze.gz,7e7d190f71b5b792c495acb2eebbbf0563a8c528adb23e9335ec3b79cb5b486f
images_12.tar.gz,https://nihcc.box.com/shared/static/ioqwiy20ihqwyr8pf4c24eazhh281pbu.gz,7316ce5f4d5e0154730e592cc2b45b48a2bee8457f6339d36c2ca55ed6e60b26
"""
# NIH's Box folder gives the metadata files no stable direct links, so they come from public repositories that
# carry byte copies, pinned to a commit (torchxrayvision; lulucikyo/CheXNet for the split lists); the SHA-256
# are those of the copies in ../shared/data (see its SOURCES.md). The last file holds the radiologist-adjudicated
# labels of Majkowska et al., Radiology 2020 (4,376 NIH images; read by `evaluate`).
NIH_METADATA_CSV = """\
file,url,sha256
Data_Entry_2017_v2020.csv.gz,https://raw.githubusercontent.com/mlmed/torchxrayvision/f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5/torchxrayvision/data/Data_Entry_2017_v2020.csv.gz,9d4de640ee4f760215d8be98376b20387ca52f9c6b4d1b727cb588fb82f40b80
BBox_List_2017.csv.gz,https://raw.githubusercontent.com/mlmed/torchxrayvision/f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5/torchxrayvision/data/BBox_List_2017.csv.gz,cf9dc6029f65daa8b389415b0546af0eeeb91fbac7d63ec49d7f8de2fd8f40cd
train_val_list.txt,https://raw.githubusercontent.com/lulucikyo/CheXNet/b46cdd5e8a70bd51074cb44bd3bb02383138f50d/preprocess/train_val_list.txt,61fbe896321c1c1c8b75f3e4f3a08e4fef6486d95ef8a667c31d4d60dca6cb81
test_list.txt,https://raw.githubusercontent.com/lulucikyo/CheXNet/b46cdd5e8a70bd51074cb44bd3bb02383138f50d/preprocess/test_list.txt,38ca5ef7f756092946f57c1a59faca882ed589a1ab1f72590b45dc06c6d5e1cc
google2019_nih-chest-xray-labels.csv.gz,https://raw.githubusercontent.com/mlmed/torchxrayvision/f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5/torchxrayvision/data/google2019_nih-chest-xray-labels.csv.gz,1d1b846e463753ed0219f67e21b10c8aef381897dbd64865c8191aa5794e8048
"""


class DownloadError(RuntimeError):
    """One file that could not be fetched; the message says why and what to do."""


def parse_manifest(text: str, source: str) -> tuple[Item, ...]:
    """Items of CSV text with the columns ``file,url,sha256`` (the layout of ARCHIVES.csv)."""
    try:
        items = tuple(Item(row["file"], row["url"], row["sha256"].lower()) for row in csv.DictReader(io.StringIO(text)))
    except (KeyError, AttributeError) as err:
        raise DownloadError(f"{source} is not a CSV with the columns file,url,sha256 (no {err}).") from None
    if not items:
        raise DownloadError(f"{source} lists no files.")
    return items


def read_manifest(path: str | Path) -> tuple[Item, ...]:
    """Items of a manifest file (``--manifest``, or the file named by $CXR_DOWNLOAD_MANIFEST)."""
    try:
        return parse_manifest(Path(path).read_text(encoding="utf-8"), str(path))
    except OSError as err:
        raise DownloadError(f"cannot read the manifest {path} ({err.strerror}).") from None


NIH_FILES = parse_manifest(NIH_METADATA_CSV, "NIH_METADATA_CSV") + parse_manifest(NIH_ARCHIVES_CSV, "NIH_ARCHIVES_CSV")


def check_free_space(to: Path, needed: int) -> None:
    """Refuse to start when the files still to fetch (plus a margin) do not fit on ``to``'s disk."""
    free = shutil.disk_usage(to).free
    if needed + MARGIN > free:
        raise DownloadError(
            f"not enough disk: the files still to fetch need {_gb(needed)} (+ {_gb(MARGIN)} spare), and {to} has "
            f"{_gb(free)} free. Free space or choose another --to; files already complete are kept."
        )


def fetch(item: Item, to: Path, bar: tqdm, retries: int = RETRIES, stop: threading.Event | None = None) -> Path:
    """Fetch one item into ``to`` (resuming ``NAME.part``), verify it, and rename it to ``NAME``.

    A dropped connection is resumed up to ``retries`` times; a checksum mismatch discards the file and
    fetches it once more from the start; ``stop`` being set ends it between two reads (the part is kept).
    Raises :class:`DownloadError` with a one-line reason.
    """
    final, part = to / item.name, to / f"{item.name}.part"
    if final.is_file():
        return final  # only ever renamed into place after its checksum matched
    digest = ""
    for _ in range(2):
        digest = _download(item, part, bar, retries, stop or threading.Event())
        if digest == item.sha256:
            os.replace(part, final)
            return final
        part.unlink()
    raise DownloadError(
        f"{item.name}: checksum mismatch twice (got {digest[:12]}..., expected {item.sha256[:12]}...): the server "
        "sends another file than the one listed. The other files are unaffected."
    )


def _download(item: Item, part: Path, bar: tqdm, retries: int, stop: threading.Event) -> str:
    """Bring ``part`` to the whole file, resuming after dropped connections; return its SHA-256."""
    for attempt in range(retries + 1):
        try:
            return _stream(item, part, bar, stop)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{item.name}: {item.url} answered {err.code} {err.reason}.") from None
        except urllib.error.URLError as err:
            host = urllib.parse.urlsplit(item.url).netloc
            raise DownloadError(
                f"{item.name}: cannot reach {host} ({err.reason}). Check the network and run the same command "
                "again: complete files are kept and partial ones resume."
            ) from None
        except (http.client.HTTPException, ConnectionError, TimeoutError) as err:
            if attempt == retries:
                raise DownloadError(
                    f"{item.name}: the connection dropped {retries + 1} times, last after {_size(part):,} bytes "
                    f"({type(err).__name__}). Run the same command again to resume from there."
                ) from None
            time.sleep(RETRY_WAIT * 2**attempt)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise DownloadError(
                f"{item.name}: disk full after {_size(part):,} bytes. Free space on {part.parent} and run the same "
                "command again: it resumes from there, and complete files are kept."
            ) from None
    raise AssertionError("the loop returns or raises")


def _stream(item: Item, part: Path, bar: tqdm, stop: threading.Event) -> str:
    """One request for the rest of ``part`` (a Range request if some of it is there); the SHA-256 of the whole."""
    digest, have = hashlib.sha256(), _size(part)
    if have:  # hash what an earlier attempt left, so the digest covers the whole file
        with open(part, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
    request = urllib.request.Request(item.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part is whole (a run stopped before checking it)
            return digest.hexdigest()
        raise
    with response, open(part, "ab" if have else "wb") as f:
        if have and response.status != 206:  # the server ignored the Range header: start over
            digest, have = hashlib.sha256(), 0
            f.truncate(0)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar.reset(total)
        bar.update(have)
        written = have
        while chunk := response.read(CHUNK):
            if stop.is_set():
                raise KeyboardInterrupt  # Ctrl-C in the main thread: end this file here, resumable
            f.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    if total is not None and written < total:  # http.client returns b"" when a connection closes early
        raise http.client.IncompleteRead(b"", total - written)
    return digest.hexdigest()


def download(
    to: str | Path, items: Iterable[Item] = NIH_FILES, jobs: int = 3, progress: bool = True, retries: int = RETRIES
) -> list[str]:
    """Fetch every item into ``to``, ``jobs`` at a time, after checking the disk can hold them.

    Returns:
        One message per file that failed (empty when all are complete and verified).

    Raises:
        DownloadError: before anything is fetched, when the server cannot be reached or the disk is too small.
    """
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    todo = [item for item in items if not (to / item.name).is_file()]
    sizes = {item.name: _remote_size(item) for item in todo}  # files of unknown size are left out of the check
    check_free_space(to, sum(max(0, size - _size(to / f"{name}.part")) for name, size in sizes.items() if size))
    slots = list(range(jobs))  # progress-bar rows, handed out to the files being fetched
    lock = threading.Lock()

    def one(item: Item) -> str | None:
        with lock:
            slot = slots.pop(0)
        bar = tqdm(desc=item.name, unit="B", unit_scale=True, position=slot, leave=False, disable=not progress)
        try:
            fetch(item, to, bar, retries, stop)
        except DownloadError as err:
            return str(err)
        finally:
            bar.close()
            with lock:
                slots.append(slot)
        return None

    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            return [message for message in pool.map(one, todo) if message]
        except KeyboardInterrupt:
            stop.set()  # otherwise leaving the pool would wait for every transfer to finish
            raise


def _remote_size(item: Item) -> int | None:
    """Content-Length of a HEAD request (None where the server does not say); the first contact with each host."""
    try:
        with urllib.request.urlopen(urllib.request.Request(item.url, method="HEAD"), timeout=TIMEOUT) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError:
        return None  # no HEAD here (or an error the download itself will report): size unknown
    except urllib.error.URLError as err:
        host = urllib.parse.urlsplit(item.url).netloc
        raise DownloadError(
            f"cannot reach {host} ({err.reason}): check the network, then run the same command again."
        ) from None
    return int(length) if length and length.isdigit() else None


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train download",
        description="Fetch NIH ChestX-ray14 (12 image archives, about 42 GB, and the metadata) into a folder, "
        "checking each file's SHA-256. Resumable: run it again after any interruption.",
    )
    parser.add_argument("--to", type=Path, required=True, help="target folder (then: prepare --data-dir TO)")
    parser.add_argument("--jobs", type=int, default=3, help="files fetched at a time (default 3)")
    parser.add_argument(
        "--manifest", type=Path, default=os.environ.get(MANIFEST_ENV) or None,
        help=f"CSV file,url,sha256 replacing the built-in list (default: ${MANIFEST_ENV}, else NIH's files)",
    )  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train download``; exit status 1 if some file is missing or wrong."""
    args = _parser().parse_args(argv)
    if args.jobs < 1:
        print("error: --jobs must be at least 1.", file=sys.stderr)
        return 2
    try:
        items = read_manifest(args.manifest) if args.manifest else NIH_FILES
        problems = download(args.to, items, args.jobs, args.progress)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    for message in problems:
        print(f"error: {message}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} file(s) not downloaded; the others are complete in {args.to}.", file=sys.stderr)
        return 1
    print(f"all files complete and verified in {args.to}.")
    print(f"next: python -m train prepare --data-dir {args.to} --image-size 512")
    return 0
