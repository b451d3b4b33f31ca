"""``python -m train download`` against a loopback server: resume, retries, checksums, and one message per failure."""

from __future__ import annotations

import csv
import hashlib
import shutil
import socket
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from tqdm import tqdm

from tests.download_server import Files, serve
from tests.nih_fixtures import nih_archive
from train.data import download as dl
from train.data.download import NIH_FILES, DownloadError, Item, download, fetch

ARCHIVES = ("images_01.tar.gz", "images_02.tar.gz", "images_03.tar.gz")


@pytest.fixture(scope="module")
def content(shared_data: Path) -> dict[str, bytes]:
    """Three small archives of real NIH images, and one metadata file."""
    images = sorted((shared_data / "nih-cxr14" / "images").glob("*.png"))[:6]
    files = {name: nih_archive(images[2 * i : 2 * i + 2]) for i, name in enumerate(ARCHIVES)}
    files["test_list.txt"] = (shared_data / "nih-cxr14" / "test_list.txt").read_bytes()
    return files


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "RETRY_WAIT", 0.0)


def items(base: str, content: dict[str, bytes]) -> list[Item]:
    return [Item(name, f"{base}/{name}", hashlib.sha256(data).hexdigest()) for name, data in content.items()]


def write_manifest(path: Path, entries: list[Item]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "url", "sha256"])
        writer.writerows((item.name, item.url, item.sha256) for item in entries)
    return path


def assert_complete(folder: Path, content: dict[str, bytes], names: object = None) -> None:
    for name in names or content:
        assert (folder / name).read_bytes() == content[name]
        assert not (folder / f"{name}.part").exists()


def test_fetches_every_file_and_skips_them_on_a_rerun(tmp_path: Path, content: dict[str, bytes]) -> None:
    files = Files(dict(content))
    with serve(files) as base:
        assert download(tmp_path, items(base, content), jobs=2, progress=False) == []
        assert_complete(tmp_path, content)
        asked = len(files.requests)
        assert download(tmp_path, items(base, content), progress=False) == []
    assert len(files.requests) == asked  # complete files are trusted: they are only ever renamed once verified
    with tarfile.open(tmp_path / ARCHIVES[0]) as tar:
        assert all(name.startswith("images/") for name in tar.getnames())


def test_a_dropped_connection_resumes_with_a_range_request(tmp_path: Path, content: dict[str, bytes]) -> None:
    files = Files(dict(content))
    files.drop[ARCHIVES[1]] = 1
    with serve(files) as base:
        assert download(tmp_path, items(base, content), progress=False) == []
    assert_complete(tmp_path, content)
    half = len(content[ARCHIVES[1]]) // 2
    assert files.gets(ARCHIVES[1]) == ["", f"bytes={half}-"]
    assert files.gets(ARCHIVES[0]) == [""]


def test_a_connection_that_keeps_dropping_fails_alone_and_resumes_later(
    tmp_path: Path, content: dict[str, bytes]
) -> None:
    files = Files(dict(content))
    files.drop[ARCHIVES[2]] = 2
    with serve(files) as base:
        problems = download(tmp_path, items(base, content), progress=False, retries=1)
        assert len(problems) == 1 and problems[0].startswith(f"{ARCHIVES[2]}: the connection dropped 2 times")
        assert "run the same command again" in problems[0].lower()
        assert_complete(tmp_path, content, [name for name in content if name != ARCHIVES[2]])
        size = len(content[ARCHIVES[2]])
        kept = (tmp_path / f"{ARCHIVES[2]}.part").stat().st_size
        assert kept == size // 2 + (size - size // 2) // 2  # both halves of what was asked for are kept
        assert download(tmp_path, items(base, content), progress=False) == []
    assert files.gets(ARCHIVES[2])[-1] == f"bytes={kept}-"
    assert_complete(tmp_path, content)


def test_a_checksum_mismatch_refetches_that_archive_only(tmp_path: Path, content: dict[str, bytes]) -> None:
    files = Files(dict(content))
    files.corrupt[ARCHIVES[0]] = 1
    with serve(files) as base:
        assert download(tmp_path, items(base, content), progress=False) == []
    assert_complete(tmp_path, content)
    assert files.gets(ARCHIVES[0]) == ["", ""]
    assert all(len(files.gets(name)) == 1 for name in content if name != ARCHIVES[0])


def test_a_persistent_mismatch_is_one_message_from_the_cli(
    tmp_path: Path, content: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = Files(dict(content))
    files.corrupt[ARCHIVES[1]] = 5
    with serve(files) as base:
        monkeypatch.setenv(dl.MANIFEST_ENV, str(write_manifest(tmp_path / "manifest.csv", items(base, content))))
        assert dl.main(["--to", str(tmp_path / "nih"), "--no-progress"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith(f"error: {ARCHIVES[1]}: checksum mismatch twice")
    assert errors[1] == f"1 file(s) not downloaded; the others are complete in {tmp_path / 'nih'}."
    assert not (tmp_path / "nih" / ARCHIVES[1]).exists() and not (tmp_path / "nih" / f"{ARCHIVES[1]}.part").exists()
    assert_complete(tmp_path / "nih", content, [name for name in content if name != ARCHIVES[1]])


def test_an_interrupted_file_resumes_and_a_whole_part_is_only_checked(
    tmp_path: Path, content: dict[str, bytes]
) -> None:
    (tmp_path / f"{ARCHIVES[0]}.part").write_bytes(content[ARCHIVES[0]][:100])
    (tmp_path / f"{ARCHIVES[1]}.part").write_bytes(content[ARCHIVES[1]])  # killed after the last byte
    files = Files(dict(content))
    with serve(files) as base:
        assert download(tmp_path, items(base, content), progress=False) == []
    assert files.gets(ARCHIVES[0]) == ["bytes=100-"]
    assert files.gets(ARCHIVES[1]) == [f"bytes={len(content[ARCHIVES[1]])}-"]  # answered 416: nothing left
    assert_complete(tmp_path, content)


def test_network_down_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manifest = write_manifest(tmp_path / "m.csv", [Item("a.tar.gz", f"http://127.0.0.1:{port}/a.tar.gz", "0" * 64)])
    assert dl.main(["--to", str(tmp_path / "nih"), "--manifest", str(manifest), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot reach 127.0.0.1:{port} (") and error.count("\n") == 1
    assert "check the network" in error


def test_too_little_disk_stops_before_fetching(
    tmp_path: Path, content: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    free = sum(len(data) for data in content.values())  # room for the files, not for the margin
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(total=10 * free, used=9 * free, free=free))
    files = Files(dict(content))
    with serve(files) as base, pytest.raises(DownloadError, match=r"^not enough disk: the files still to fetch need"):
        download(tmp_path, items(base, content), progress=False)
    assert {method for method, _, _ in files.requests} == {"HEAD"}
    assert not list(tmp_path.iterdir())


def test_a_bad_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("name,link\na,b\n", encoding="utf-8")
    with pytest.raises(DownloadError, match="not a CSV with the columns file,url,sha256"):
        dl.read_manifest(tmp_path / "m.csv")


def test_the_built_in_archives_are_nihs(shared_data: Path) -> None:
    with open(shared_data / "nih-cxr14" / "ARCHIVES.csv", encoding="utf-8", newline="") as f:
        listed = [(row["file"], row["url"], row["sha256"]) for row in csv.DictReader(f)]
    archives = [(item.name, item.url, item.sha256) for item in NIH_FILES if item.name.endswith(".tar.gz")]
    assert archives == listed and len(archives) == 12


def test_the_built_in_metadata_hashes_are_those_of_the_shared_copies(shared_data: Path) -> None:
    for item in NIH_FILES:
        local = shared_data / "nih-cxr14" / item.name
        if not item.name.endswith(".tar.gz"):
            assert hashlib.sha256(local.read_bytes()).hexdigest() == item.sha256, item.name


def test_a_stop_request_ends_a_transfer_and_keeps_its_part(tmp_path: Path, content: dict[str, bytes]) -> None:
    stop = threading.Event()
    stop.set()  # as download() does on Ctrl-C, for the transfers still running in its threads
    files = Files(dict(content))
    [item] = [entry for entry in items("", content) if entry.name == ARCHIVES[0]]
    with serve(files) as base:
        with pytest.raises(KeyboardInterrupt):
            fetch(Item(item.name, base + item.url, item.sha256), tmp_path, tqdm(disable=True), stop=stop)
        assert not (tmp_path / ARCHIVES[0]).exists() and (tmp_path / f"{ARCHIVES[0]}.part").is_file()
        assert download(tmp_path, items(base, content), progress=False) == []
    assert_complete(tmp_path, content)
