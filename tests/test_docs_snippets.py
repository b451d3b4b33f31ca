"""Every Python and shell block of README.md and docs/ is run by a test, or says why it cannot run here.

A block is one of three kinds, by the HTML comment just before its fence (invisible on the rendered page):

- ``<!-- not run: REASON -->``: it cannot run here (a GPU, the 42 GB download, the Hub, a fresh venv, a server
  that runs until stopped). Each is a skipped test whose reason pytest prints (``-ra``), so the list of what is
  not run is in every test run's output.
- ``<!-- run by tests/test_x.py: HOW -->``: a test of its own runs it with assertions on what it gives (the tiny
  training run, the scoring commands, the API clients); checked here to exist and to read this very page.
- no comment: this module runs it, as written, in a scratch folder laid out like a checkout, on the bundled
  starter and real NIH images, and checks what it printed or wrote.

Why not pytest-markdown-docs or mktestdocs: the first pins markdown-it-py below 4 (the venv has 4.3, which rich
needs) and runs Python blocks only; the second finds fences line by line and ``exec``s Python in the test process;
neither can mark a block as not runnable with a reason. The blocks are found with markdown-it-py, the parser
those libraries use.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Predictor
from cxr.sources import STARTER_DIR
from tests.conftest import DATA, EXAMPLES, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"python", "py", "bash", "sh", "shell", "console", "js", "javascript"}  # what people copy and run
MARKER = re.compile(r"<!--\s*(not run|run by (?P<test>tests/test_\w+\.py))\s*:\s*(?P<why>.+?)\s*-->", re.DOTALL)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    marker: str | None  # "not run", "run by", or None: run here
    test: str | None  # for "run by": the test file
    why: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks in the languages above, each with the marker comment just before it."""
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    found = []
    for i, token in enumerate(tokens):
        language = token.info.split()[0] if token.info else ""
        if token.type != "fence" or language not in LANGUAGES:
            continue
        before = tokens[i - 1] if i and tokens[i - 1].type == "html_block" else None
        marker = MARKER.search(before.content) if before else None
        kind = None if not marker else "not run" if marker.group(1) == "not run" else "run by"
        test, why = (marker["test"], marker["why"]) if marker else (None, None)
        found.append(Block(page, token.map[0] + 1, language, token.content, kind, test, why))
    return found


ALL = [block for page in PAGES for block in blocks(page)]
BY_KIND = {kind: [b for b in ALL if b.marker == kind] for kind in ("not run", "run by", None)}


def test_the_pages_have_blocks_of_every_kind() -> None:
    assert len(ALL) >= 15 and all(BY_KIND.values())
    assert not [b.where for b in BY_KIND[None] if b.language not in {"python", "py", "bash", "sh", "shell"}]


@pytest.mark.parametrize("block", BY_KIND["not run"], ids=lambda b: b.where)
def test_blocks_that_cannot_run_here_say_why(block: Block) -> None:
    assert len(block.why) > 20, f"{block.where}: say why it cannot run here"
    pytest.skip(f"not run here: {block.where}: {' '.join(block.why.split())}")


@pytest.mark.parametrize("block", BY_KIND["run by"], ids=lambda b: b.where)
def test_blocks_run_by_another_test_are_read_from_this_page_by_it(block: Block) -> None:
    test = ROOT / block.test
    assert test.is_file(), f"{block.where}: {block.test} does not exist"
    page = block.page.relative_to(ROOT)
    reads = (f'"{page}"', " / ".join(f'"{part}"' for part in page.parts))  # "docs/x.md" or "docs" / "x.md"
    assert any(form in test.read_text(encoding="utf-8") for form in reads), f"{block.test} does not read {page}"


def test_the_readmes_test_command_is_what_ci_runs() -> None:
    command = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        shown = [b.code.strip() for b in blocks(page) if "pytest" in b.code]
        assert shown == [command], f"{page.name}'s test command is not .ci/run's"


# The blocks this module runs, each with what its output must show; a new unmarked block fails until it is here.
def _library_python(workdir: Path, stdout: str, starter: Predictor) -> None:
    answer = json.loads(stdout.strip().splitlines()[-1])
    expected = starter.predict(workdir / "chest.dcm")
    np.testing.assert_allclose(answer["probabilities"], expected.probabilities, atol=1e-6, rtol=0)
    assert answer["positive"] == expected.positive
    assert answer["heatmap"] == [expected.image.shape[0], expected.image.shape[1]]
    height, width, channels = answer["overlay"]  # the radiograph with its caption on a band below it
    assert (width, channels) == (expected.image.shape[1], 3) and height > expected.image.shape[0]
    assert answer["batch"] == 2


def _library_cli(workdir: Path, stdout: str, starter: Predictor) -> None:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"')]  # not `info`'s indented JSON
    predictions = [line for line in lines if "probabilities" in line]
    names = [Path(p["image"]).name for p in predictions]
    assert names == ["00000001_000.png", "00000005_007.png", "study.dcm", "scan.png"]
    expected = starter.predict(workdir / "scans" / "00000001_000.png")
    got = [predictions[0]["probabilities"][label] for label in CHESTXRAY14_LABELS]
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-5, rtol=0)
    assert all(Path(workdir, path).is_file() for p in predictions[:3] for path in p["overlays"].values())
    assert predictions[3]["model"]["trained"] is False  # the untrained development weights just made
    config = json.loads((workdir / "dev-weights" / "config.json").read_text())
    assert (config["trunk"], config["image_size"]) == ("resnet18", 256)


RUN_HERE = {
    ("docs/library.md", "from cxr import Predictor"): (
        _library_python,
        # appended to the block: what its expressions returned, printed for the check above
        "\nimport json\nprint(json.dumps({'probabilities': result.probabilities.tolist(), 'positive': result.positive,"
        " 'heatmap': list(result.heatmap('Effusion').shape), 'overlay': list(result.overlay('Effusion').shape),"
        " 'batch': len(predictor.predict_batch(['a.png', 'b.png']))}))\n",
    ),
    ("docs/library.md", "python -m cxr predict scans/"): (_library_cli, ""),
}


def _check_for(block: Block):
    page = str(block.page.relative_to(ROOT))
    matches = [value for (where, start), value in RUN_HERE.items() if where == page and block.code.startswith(start)]
    assert len(matches) == 1, f"{block.where}: a block run here needs its check in RUN_HERE, or a marker"
    return matches[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder laid out like a checkout (its top-level entries linked), with the files blocks name."""
    work = tmp_path_factory.mktemp("snippets")
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".venv", "runs", "site"} and not entry.name.startswith("."):
            (work / entry.name).symlink_to(entry)
    nih = sorted(EXAMPLES.glob("*.png"))
    (work / "scans").mkdir()
    for image in nih[:2]:
        (work / "scans" / image.name).symlink_to(image)
    for name, source in {"a.png": nih[0], "b.png": nih[1], "scan.png": nih[2]}.items():
        (work / name).symlink_to(source)
    for name in ("chest.dcm", "study.dcm"):
        (work / name).symlink_to(DATA / "siim_monochrome2.dcm")
    return work


@pytest.fixture(scope="module")
def starter() -> Predictor:
    return Predictor.from_pretrained(STARTER_DIR, device="cpu")  # torch fp32: what the blocks get offline


@pytest.mark.parametrize("block", BY_KIND[None], ids=lambda b: b.where)
def test_blocks_run_as_written(block: Block, workdir: Path, starter: Predictor, tmp_path: Path) -> None:
    check, appended = _check_for(block)
    env = {key: value for key, value in os.environ.items() if not key.startswith("CXR_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",  # `python` is this interpreter
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
        CXR_CACHE=os.environ.get("CXR_CACHE", str(tmp_path / "cxr-cache")),  # the session's exports, if any
        CXR_BACKEND="torch",  # answers compared with an in-process torch fp32 Predictor
    )
    if block.language in {"python", "py"}:
        command = [sys.executable, "-c", block.code + appended]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block.code + appended]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{block.where}:\n{shlex.join(command[:2])}\n{result.stderr[-3000:]}"
    check(workdir, result.stdout, starter)
