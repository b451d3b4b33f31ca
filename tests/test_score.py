"""`python -m cxr score`: rows equal to `cxr predict`, bad files recorded, manifests, resume, kill safety, maps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cxr.scoring.run
from cxr.cli import main
from cxr.config import ModelConfig
from cxr.scoring.local import default_workers
from cxr.scoring.rows import probability_column
from cxr.scoring.store import read_metadata
from cxr.weights import save_model, sha256_of
from tests.conftest import DATA, NIH_512, NIH_EXAMPLES, ROOT, make_model

# Four distinct real NIH PNGs and a DICOM.
NIH_PNGS = list({p.name: p for p in [*NIH_512, *NIH_EXAMPLES]}.values())[:4]
IMAGES = [*NIH_PNGS, DATA / "siim_monochrome2.dcm"]


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Real images (NIH PNGs, a DICOM) copied into one folder, plus a corrupt PNG."""
    folder = tmp_path / "images"
    folder.mkdir()
    copies = [Path(shutil.copy(p, folder / p.name)) for p in IMAGES]
    bad = folder / "zz_corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    return [*copies, bad]


def score(*args: str | Path, weights: Path) -> int:
    return main(["score", *map(str, args), "--weights", str(weights), "--no-progress"])


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_rows_equal_predict_and_a_corrupt_file_is_recorded(images, tiny_weights, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    assert score(images[0].parent, "--out", out, "--batch-size", "2", "--workers", "1", weights=tiny_weights) == 1
    capsys.readouterr()
    main(["predict", *map(str, images[:-1]), "--weights", str(tiny_weights)])
    printed = {line["image"]: line for line in map(json.loads, capsys.readouterr().out.splitlines())}

    by_path = {row["path"]: row for row in rows(out)}
    assert sorted(by_path) == sorted(map(str, images))
    bad = by_path[str(images[-1])]
    assert bad["error"] and "damaged or truncated" in bad["error"]
    assert bad["sha256"] == sha256_of(images[-1]) and bad[probability_column("Atelectasis")] is None
    for path in images[:-1]:
        row, record = by_path[str(path)], printed[str(path)]
        assert row["error"] is None and row["sha256"] == sha256_of(path)
        for label, p in record["probabilities"].items():
            assert row[probability_column(label)] == pytest.approx(p, abs=1e-5)
        for key in ("positive", "at_chance", "empty_maps", "input_check"):
            assert row[key] == record[key]
        assert row["weights_sha256"] == record["model"]["weights_sha256"]


def test_file_metadata_names_the_weights_and_the_version(images, tiny_weights, tmp_path):
    out = tmp_path / "scores.parquet"
    score(images[0], "--out", out, weights=tiny_weights)
    meta = read_metadata(out)
    config = json.loads((tiny_weights / "config.json").read_text())
    assert meta["weights"]["weights_sha256"] == config["metadata"]["weights_sha256"]
    assert meta["weights"]["source"] == tiny_weights.name and meta["weights"]["kind"] == "folder"
    assert meta["cxr_version"] == "0.1.0"
    assert meta["config"]["thresholds"] == config["thresholds"] and meta["labels"] == config["labels"]


def test_manifests_carry_their_columns(images, tiny_weights, tmp_path):
    folder = images[0].parent
    (folder / "manifest.csv").write_text(
        "file,patient,study\n" + "".join(f"{p.name},P{i},S{i}\n" for i, p in enumerate(images[:2])), encoding="utf-8"
    )
    out = tmp_path / "scores.parquet"
    score(folder / "manifest.csv", "--path-column", "file", "--out", out, weights=tiny_weights)
    table = pq.read_table(out)
    assert table.column_names[-2:] == ["patient", "study"]
    assert [(r["path"], r["patient"], r["study"]) for r in table.to_pylist()] == [
        (str(folder / images[0].name), "P0", "S0"),
        (str(folder / images[1].name), "P1", "S1"),
    ]
    pq.write_table(pa.table({"path": [str(images[2])], "site": ["A"]}), tmp_path / "manifest.parquet")
    assert score(tmp_path / "manifest.parquet", "--out", tmp_path / "p.parquet", weights=tiny_weights) == 0
    assert [(r["path"], r["site"]) for r in rows(tmp_path / "p.parquet")] == [(str(images[2]), "A")]


def test_resume_skips_scored_images_and_rescores_changed_ones(images, tiny_weights, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    score(*images[:2], "--out", out, weights=tiny_weights)
    first = {r["path"]: r for r in rows(out)}
    capsys.readouterr()
    shutil.copy(images[3], images[1])  # same path, other bytes
    score(*images[:4], "--out", out, weights=tiny_weights)
    err = capsys.readouterr().err
    assert "added 3" in err and "skipped 1 already scored" in err
    second = {r["path"]: r for r in rows(out)}
    assert sorted(second) == sorted(map(str, images[:4]))
    assert second[str(images[0])] == first[str(images[0])]
    assert second[str(images[1])]["sha256"] == sha256_of(images[3]) != first[str(images[1])]["sha256"]
    assert not out.with_name(out.name + ".parts").exists()


def test_other_weights_are_refused(images, tiny_weights, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    score(images[0], "--out", out, weights=tiny_weights)
    other = save_model(make_model(seed=1), tmp_path / "other")
    assert score(images[1], "--out", out, weights=other) == 2
    assert "other weights" in capsys.readouterr().err
    assert [r["path"] for r in rows(out)] == [str(images[0])]


def test_cams_write_maps_or_overlays(images, tiny_weights, tmp_path):
    out = tmp_path / "scores.parquet"
    score(*images[:2], "--out", out, "--cams", tmp_path / "maps", weights=tiny_weights)
    row = rows(out)[0]
    with np.load(row["cam_files"][0]) as saved:
        assert saved["maps"].shape[0] == 14 and saved["maps"].dtype == np.float16
        assert list(saved["labels"]) == json.loads((tiny_weights / "config.json").read_text())["labels"]
        assert 0.0 <= saved["maps"].min() and saved["maps"].max() <= 1.0
    overlays = tmp_path / "overlays.parquet"
    score(
        images[0], "--out", overlays, "--cams", tmp_path / "png", "--cam-labels", "Effusion,Mass", weights=tiny_weights
    )
    files = rows(overlays)[0]["cam_files"]
    assert [Path(f).name.rsplit("_", 1)[1] for f in files] == ["Effusion.png", "Mass.png"]
    assert all(Path(f).stat().st_size > 1000 for f in files)


def test_sigkill_or_ctrl_c_mid_run_loses_nothing_written_and_resume_completes(tmp_path):
    """A real SIGKILL of `cxr score` mid-run, a Ctrl-C of the re-run, then a last run: every image once."""
    weights = save_model(make_model(ModelConfig(trunk="resnet18", image_size=64)), tmp_path / "small")
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        shutil.copy(IMAGES[i % 4], folder / f"img{i:02d}.png")
    out = tmp_path / "scores.parquet"
    parts = out.with_name(out.name + ".parts")
    command = [sys.executable, "-m", "cxr", "score", str(folder), "--out", str(out), "--weights", str(weights)]
    command += ["--batch-size", "1", "--workers", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(parts.glob("part-*.parquet"))) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert workers, "the run had no decoding worker"
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(not Path(f"/proc/{pid}").exists() or _state(pid) == "Z" for pid in workers), "orphaned workers"
    assert not out.exists()
    written = [pq.read_table(p) for p in parts.glob("part-*.parquet")]  # every part left is a whole file
    before = {r["path"] for t in written for r in t.to_pylist()}
    assert 5 <= len(before) < 40

    # Ctrl-C of the re-run: it stops with status 130 and what it wrote is kept.
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(parts.glob("part-*.parquet"))) < len(written) + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait() == 130 and "re-run the same command to resume" in process.stderr.read()
    assert len({r["path"] for p in parts.glob("part-*.parquet") for r in pq.read_table(p).to_pylist()}) >= 8

    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paths = [r["path"] for r in rows(out)]
    assert len(paths) == len(set(paths)) == 40
    assert set(paths) == {str(p) for p in folder.glob("*.png")}
    assert all(r["error"] is None for r in rows(out))


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    ("on_gpu", "cores", "expected"), [(False, 2, 0), (False, 64, 0), (True, 2, 1), (True, 6, 5), (True, 64, 8)]
)
def test_default_decoding_workers(on_gpu, cores, expected):
    # On the CPU the model's threads own every core (a decoding process slowed scoring in bench.score_speed);
    # with a GPU, spare cores decode ahead of it.
    assert default_workers(on_gpu, cores) == expected


def test_a_default_cpu_run_decodes_in_the_main_process(images, tiny_weights, tmp_path, monkeypatch):
    seen = []
    real = cxr.scoring.run.local_batches
    monkeypatch.setattr("cxr.scoring.run.local_batches", lambda *a, **kw: seen.append(kw["workers"]) or real(*a, **kw))
    score(images[0].parent, "--out", tmp_path / "s.parquet", weights=tiny_weights)
    assert seen == [0]
