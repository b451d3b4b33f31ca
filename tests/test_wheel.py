"""The built wheel installs into a fresh virtual environment and ``python -m cxr predict`` works there.

The fresh venv (no system site-packages) sees only the distributions the wheel's own metadata asks for,
recursively: they are linked in from the test's environment, where the project's install already put them, so
the test runs offline in seconds instead of downloading torch again. pip then installs the wheel with
``--no-index``: a dependency the wheel declares but the environment lacks, or a version it cannot have, fails
the install, and an import the wheel forgot to declare fails the prediction.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Predictor
from cxr.weights import save_model
from tests.conftest import NIH_512, ROOT, make_model

STARTER_FILES = {"config.json", "model.safetensors", "README.md", "metrics.json"}
# This machine's pip configuration may add mirrors or wheel folders; the test uses none of them.
PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT")

pytestmark = pytest.mark.slow  # builds and installs a wheel, and starts torch in a second interpreter


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in PIP_SOURCES and k != "PYTHONPATH"}
    env["PIP_CONFIG_FILE"] = os.devnull
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _source_tree(folder: Path) -> Path:
    """A copy of what the wheel is built from, with a starter weights folder if the checkout has none yet."""
    folder.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, folder / name)
    for package in ("cxr", "train"):
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    starter = folder / "cxr" / "starter"
    if not starter.is_dir():
        save_model(make_model(), starter)
        (starter / "README.md").write_text("# Starter weights (test stand-in: random resnet18)\n")
        (starter / "metrics.json").write_text("{}\n")
    return folder


def _requirement_closure(requirements: list[Requirement]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``requirements`` need, following each one's own requirements and extras."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(r, frozenset(r.extras)) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement, extras = todo.pop()
        key = (canonicalize_name(requirement.name), extras)
        if key in seen:
            continue
        seen.add(key)
        dist = found.setdefault(key[0], importlib.metadata.distribution(requirement.name))
        for line in dist.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((needed, frozenset(needed.extras)))
    return list(found.values())


def _link_into(site_packages: Path, dists: list[importlib.metadata.Distribution]) -> None:
    """Make ``dists`` importable (and visible to pip) in ``site_packages`` by linking their top-level entries."""
    for dist in dists:
        for top in {path.parts[0] for path in dist.files or [] if path.parts[0] not in ("..", "__pycache__")}:
            link = site_packages / top
            if not link.exists():  # namespace folders such as nvidia/ are shared by several distributions
                link.symlink_to(dist.locate_file(top))


def test_the_wheel_installs_into_a_fresh_venv_and_predicts_like_the_checkout(tmp_path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    source = _source_tree(tmp_path / "src")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source))
    (wheel,) = (tmp_path / "dist").glob("cxr-*.whl")
    assert wheel.name.startswith(f"cxr-{version}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"cxr-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"cxr-{version}.dist-info/entry_points.txt").decode()
    modules = {
        p.relative_to(source).as_posix() for package in ("cxr", "train") for p in (source / package).rglob("*.py")
    }
    assert modules <= names and "train/evaluation/__init__.py" in modules  # subpackages too
    starter_files = {p.relative_to(source).as_posix() for p in (source / "cxr" / "starter").rglob("*") if p.is_file()}
    assert {f"cxr/starter/{name}" for name in STARTER_FILES} <= starter_files <= names  # evaluation/ too, if any
    assert "cxr = cxr.cli:main" in entry_points  # the `cxr` command, besides `python -m cxr`
    requires = [
        Requirement(line.split(": ", 1)[1]) for line in metadata.splitlines() if line.startswith("Requires-Dist")
    ]
    runtime = [r for r in requires if r.marker is None]
    assert {"torch", "numpy", "safetensors"} <= {r.name for r in runtime} and "gradio" not in {r.name for r in runtime}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    (site_packages,) = venv.glob("lib/python3*/site-packages")
    _link_into(site_packages, _requirement_closure(runtime))
    installed = _pip("--python", str(python), "install", "--no-index", str(wheel)).stdout
    assert installed.strip().endswith(f"Successfully installed cxr-{version}")  # every dependency was there
    _pip("--python", str(python), "check")

    starter = site_packages / "cxr" / "starter"
    image = NIH_512[0]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [str(python), "-m", "cxr", "predict", str(image), "--weights", str(starter)],
        cwd=tmp_path,  # not the checkout: cxr must come from the installed wheel
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    answer = json.loads(line)
    assert answer["image"] == str(image) and list(answer["probabilities"]) == list(CHESTXRAY14_LABELS)
    expected = Predictor.from_pretrained(source / "cxr" / "starter", device="cpu").predict(image)
    assert answer["probabilities"] == pytest.approx(expected.probability_by_label, abs=1e-5)
    find = "import importlib.util; print(importlib.util.find_spec('cxr').origin)"  # without importing torch again
    where = subprocess.run([str(python), "-c", find], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(site_packages)
