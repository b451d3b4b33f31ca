"""The tiny end-to-end run of docs/training.md (prepare, fit, evaluate, predict on real NIH images), line for line.

The lines are read from the page's "A tiny end-to-end run" block and run in this process, with ``$DATA``
pointing at 40 of the shared real images (with all of NIH's metadata) so the suite stays fast.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from cxr.cli import main as cxr_main
from cxr.labels import CHESTXRAY14_LABELS
from tests.conftest import ROOT
from train.__main__ import main as train_main

METADATA = ("Data_Entry_2017_v2020.csv.gz", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv")


def readme_tiny_run() -> list[str]:
    """The command lines of the docs/training.md block under "## A tiny end-to-end run"."""
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    block = re.search(r"## A tiny end-to-end run\n.*?```bash\n(.*?)```", text, re.DOTALL)
    assert block, "docs/training.md has no tiny end-to-end run"
    return [line for line in block.group(1).splitlines() if line.startswith("python -m ")]


@pytest.fixture
def data(shared_data: Path, tmp_path: Path) -> Path:
    """NIH's metadata and 30 train_val + 10 test real images, as symlinks, with the image the page predicts on."""
    source = shared_data / "nih-cxr14"
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    for name in METADATA:
        (root / name).symlink_to(source / name)
    with open(source / "images" / "SOURCES.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    chosen = [row["image"] for row in rows if row["split"] == "train_val"][:30]
    chosen += [row["image"] for row in rows if row["split"] == "test"][:10]
    for name in {*chosen, "00000001_000.png"}:
        (root / "images" / name).symlink_to(source / "images" / name)
    return root


def test_the_readme_tiny_run(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = readme_tiny_run()
    assert [shlex.split(line)[2:4] for line in lines] == [
        ["train", "prepare"], ["train", "fit"], ["train", "evaluate"], ["cxr", "predict"]
    ]  # fmt: skip
    run = tmp_path / "tiny"
    for line in lines:
        argv = shlex.split(line.replace("$DATA", str(data)).replace("$RUN", str(run)))
        entry = train_main if argv[2] == "train" else cxr_main
        assert entry(argv[3:]) == 0, line
    weights = run / "run" / "weights"
    training = json.loads((weights / "config.json").read_text())["metadata"]["training"]
    at_hand = len(list((data / "images").glob("*.png")))
    assert training["data_subset"]["train_val"]["used"] + training["data_subset"]["test"]["used"] == at_hand
    assert json.loads((run / "run" / "run.json").read_text())["accum_steps"] >= 1  # settled by the memory plan
    assert (weights / "evaluation" / "metrics.json").is_file()
    printed = capsys.readouterr().out.strip().splitlines()
    answer = json.loads(printed[-1])
    assert set(answer["probabilities"]) == set(CHESTXRAY14_LABELS)
    training_log = [line for line in printed if line.startswith(("memory:", "epoch 1/1:", "best epoch"))]
    assert len(training_log) == 3 and re.search(r"val mean AUROC (0|1)\.\d{4}\b", training_log[1])
    assert not [line for line in training_log if re.search(r"\d\.\d{5}", line)]  # rounded to 4 decimals at most
