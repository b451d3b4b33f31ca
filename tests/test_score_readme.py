"""The "Score an archive" commands of docs/scoring.md, line for line, on a CheXpert-layout fixture of real NIH images.

They run with the default weights (the bundled starter, the Hub being offline in tests); the Ray line starts a
local cluster of its own, which it must shut down.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cxr.cli import main as cxr_main
from tests.test_evaluate_scores import chexpert_fixture, nih_truth, pick  # noqa: F401  (nih_truth: a fixture)
from train.__main__ import main as train_main

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")


def readme_lines() -> list[list[str]]:
    text = (ROOT / "docs" / "scoring.md").read_text(encoding="utf-8")
    section = text.split("## Score an archive", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "docs/scoring.md has no Score an archive block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def test_readme_score_commands_run(nih_truth, shared_data, tmp_path, monkeypatch):  # noqa: F811
    lines = readme_lines()
    assert [line[:4] for line in lines] == [
        ["python", "-m", "cxr", "score"],
        ["python", "-m", "train", "evaluate"],
        ["python", "-m", "cxr", "score"],
    ]
    chexpert_fixture(tmp_path, pick(nih_truth, shared_data, 7))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CXR_WEIGHTS", raising=False)
    for line in lines:
        run = cxr_main if line[2] == "cxr" else train_main
        assert run([*line[3:], "--no-progress"] if line[3] == "score" else line[3:]) == 0, line
    local, distributed = pq.read_table("scores.parquet"), pq.read_table("scores-ray.parquet")
    assert local.num_rows == distributed.num_rows == 7
    assert local.column("p_Edema").to_pylist() == pytest.approx(distributed.column("p_Edema").to_pylist(), abs=1e-6)
    assert all(Path(files[0]).is_file() for files in local.column("cam_files").to_pylist())
    metrics = json.loads(Path("external/metrics.json").read_text())
    assert metrics["n_images"] == 6 and metrics["external"]["views_matched"]["lateral"] == 1
    assert not ray.is_initialized()  # the cluster the engine started is gone
