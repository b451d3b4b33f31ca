"""The Space deployment, checked offline: workflow files are valid, the right files go, the README can start it."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
DEPLOY_SCRIPT = ROOT / ".github" / "deploy_space.py"
GRADIO_PIN = re.search(r"^gradio==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
GOOD_README = f"""---
title: Chest X-ray findings with Grad-CAM
emoji: 🫁
colorFrom: blue
colorTo: gray
sdk: gradio
sdk_version: {GRADIO_PIN}
app_file: app.py
license: mit
models: [cxr-project/chestxray14-resnet50-lse]
short_description: 14 chest X-ray findings with a Grad-CAM heatmap for each
---
# cxr
"""


def _load_deploy_script():
    spec = importlib.util.spec_from_file_location("deploy_space", DEPLOY_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy_space = _load_deploy_script()


def _workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_workflow_files_pass_the_github_workflow_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert WORKFLOWS / "deploy.yml" in files
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which(
        "check-jsonschema"
    )
    assert checker, "check-jsonschema (requirements-dev.txt) is not installed"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed here")
def test_workflow_files_pass_actionlint() -> None:
    result = subprocess.run(["actionlint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_deploy_runs_on_main_only_after_the_tests_pass_with_repository_settings() -> None:
    workflow = _workflow("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    jobs = workflow["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in _workflow("ci.yml")["on"], "ci.yml must be callable for deploy.yml to reuse it"
    deploy = jobs["deploy"]
    assert deploy["needs"] == "test"
    steps = deploy["steps"]
    upload = steps[-1]
    assert upload["run"] == "python .github/deploy_space.py"
    assert upload["env"] == {"HF_SPACE_ID": "${{ vars.HF_SPACE_ID }}", "HF_TOKEN": "${{ secrets.HF_TOKEN }}"}
    assert "vars.HF_SPACE_ID" in deploy["if"]
    assert any(step.get("run") == "python .github/deploy_space.py --dry-run" for step in steps)
    assert "secrets." not in yaml.safe_dump(steps[:-1])  # the token reaches the upload step only


def test_the_space_gets_the_app_library_requirements_and_examples_but_no_training_or_tests(tmp_path) -> None:
    files = set(deploy_space.space_files(ROOT))
    assert {"app.py", "requirements.txt"} <= files
    assert {f"cxr/{p.name}" for p in (ROOT / "cxr").glob("*.py")} <= files
    assert {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.png")} <= files and "examples/SOURCES.md" in files
    assert not [f for f in files if f.split("/")[0] in {"train", "tests", "bench", ".github", ".ci", ".venv"}]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    # The same selection on a synthetic tree, including a nested folder under cxr/.
    for name in ("app.py", "README.md", "cxr/io.py", "cxr/__pycache__/io.cpython-311.pyc", "train/train.py",
                 "tests/test_app.py", "examples/a.png", "weights/model.safetensors", "notes.txt"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert deploy_space.space_files(tmp_path) == ["README.md", "app.py", "cxr/io.py", "examples/a.png"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("sdk: gradio", "sdk: docker"), "sdk is 'docker', not 'gradio'"),
        (("app_file: app.py", "app_file: main.py"), "app_file is 'main.py', not 'app.py'"),
        ((f"sdk_version: {GRADIO_PIN}", "sdk_version: 5.0.0"), f"pins gradio=={GRADIO_PIN}"),
        ((GOOD_README.split("# cxr")[0], ""), "sdk is None"),  # no front matter at all
    ],
)
def test_front_matter_that_would_not_start_the_app_is_refused(change, problem) -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    deploy_space.check_front_matter(GOOD_README, requirements)  # the good one passes
    with pytest.raises(deploy_space.DeployError, match=re.escape(problem)):
        deploy_space.check_front_matter(GOOD_README.replace(*change), requirements)


def test_the_repository_readme_starts_the_space() -> None:
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not written yet")
    deploy_space.check_front_matter(readme.read_text(encoding="utf-8"), (ROOT / "requirements.txt").read_text())
