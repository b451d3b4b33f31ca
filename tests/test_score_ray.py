"""`cxr score --engine ray` on a local Ray cluster (CPU, 2 actors): the same rows as the local engine."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from cxr.cli import main
from cxr.scoring.rows import probability_column
from tests.test_score import IMAGES

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One small local cluster for the module; its processes are shut down afterwards."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_rows_equal_local_rows_and_a_bad_file_is_recorded(cluster, tiny_weights, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in IMAGES:
        shutil.copy(path, folder / path.name)
    (folder / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    common = ["score", str(folder), "--weights", str(tiny_weights), "--batch-size", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local.parquet")]) == 1
    assert main([*common, "--out", str(tmp_path / "ray.parquet"), "--engine", "ray", "--workers", "2"]) == 1
    local = pq.read_table(tmp_path / "local.parquet")
    distributed = pq.read_table(tmp_path / "ray.parquet")
    assert distributed.schema.equals(local.schema, check_metadata=True)
    assert distributed.num_rows == local.num_rows == len(IMAGES) + 1
    for a, b in zip(local.to_pylist(), distributed.to_pylist(), strict=True):
        assert a["path"] == b["path"] and a["sha256"] == b["sha256"] and a["error"] == b["error"]
        for column in a:
            if column.startswith("p_") and a[column] is not None:
                assert b[column] == pytest.approx(a[column], abs=1e-6)
            elif not column.startswith("p_"):
                assert b[column] == a[column], column
    assert distributed.to_pylist()[-1]["error"] and distributed.to_pylist()[-1][probability_column("Mass")] is None
    assert ray.is_initialized()  # the engine used the running cluster and left it to its owner

    capsys.readouterr()
    main([*common, "--out", str(tmp_path / "ray.parquet"), "--engine", "ray", "--workers", "2"])  # resume
    assert f"skipped {len(IMAGES) + 1} already scored" in capsys.readouterr().err
    assert pq.read_table(tmp_path / "ray.parquet").equals(distributed)
