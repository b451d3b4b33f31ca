"""The Space deployment, checked offline: workflow files are valid, the right files and requirements go, the README
front matter can start it, and the requirements have wheels for its Python (pip reading indexes laid out on disk)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from huggingface_hub import SpaceCard, SpaceHardware
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
DEPLOY_SCRIPT = ROOT / ".github" / "deploy_space.py"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
GRADIO_PIN = re.search(
    r"^gradio(?:\[[^]]*\])?==(\S+)", "\n".join(PYPROJECT["project"]["optional-dependencies"]["app"]), re.M
).group(1)
GOOD_README = f"""---
title: Chest X-ray findings with Grad-CAM
emoji: 🫁
colorFrom: blue
colorTo: gray
sdk: gradio
sdk_version: {GRADIO_PIN}
python_version: "3.11"
app_file: app.py
license: mit
short_description: 14 chest X-ray findings with a Grad-CAM heatmap for each
---
# cxr
"""


def _load_deploy_script():
    spec = importlib.util.spec_from_file_location("deploy_space", DEPLOY_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


deploy_space = _load_deploy_script()
CPU_BASIC = deploy_space.PROFILES["cpu-basic"]
ZERO_GPU = deploy_space.PROFILES["zero-gpu"]


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


def test_the_docs_site_is_built_strictly_on_every_push_and_deployed_to_pages_from_main_only() -> None:
    workflow = _workflow("docs.yml")
    assert "push" in workflow["on"] and not (workflow["on"]["push"] or {}).get("branches")  # every branch
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    runs = [step.get("run", "") for step in build["steps"]]
    assert any("mkdocs build --strict" in run for run in runs)
    assert any("['optional-dependencies']['docs']" in run for run in runs)  # the docs extra of pyproject.toml
    uses = {step["uses"].split("@")[0] for step in build["steps"] + deploy["steps"] if "uses" in step}
    assert {"actions/upload-pages-artifact", "actions/deploy-pages"} <= uses
    assert workflow["permissions"] == {"contents": "read"}  # only the deploy job may write to Pages
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build" and "refs/heads/main" in deploy["if"]
    assert deploy["environment"]["name"] == "github-pages"


def test_the_space_gets_the_app_library_requirements_and_examples_but_no_training_or_tests(tmp_path) -> None:
    files = set(deploy_space.space_files(ROOT))
    assert "app.py" in files and "requirements.txt" not in files  # stage() writes the Space's own
    assert {f"cxr/{p.name}" for p in (ROOT / "cxr").glob("*.py")} <= files
    assert {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.png")} <= files and "examples/SOURCES.md" in files
    assert "docs/images/page-after-a-prediction.png" in files  # the README's screenshot
    assert not [f for f in files if f.startswith("docs/") and not f.startswith("docs/images/")]  # not the site
    assert not [f for f in files if f.split("/")[0] in {"train", "tests", "bench", ".github", ".ci", ".venv"}]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    # The same selection on a synthetic tree, including a nested folder under cxr/.
    for name in ("app.py", "README.md", "cxr/io.py", "cxr/__pycache__/io.cpython-311.pyc", "train/fitting/loop.py",
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
        # The README before issue 11: Spaces default to Python 3.10, which the project does not support.
        (('python_version: "3.11"\n', ""), "python_version is not set (Spaces then use Python 3.10"),
        (('"3.11"', "3.10"), "python_version is 3.1, not a quoted version"),  # YAML's number 3.10
        (('"3.11"', '"3.10"'), "python_version is '3.10' but the project needs Python >=3.11"),
        # A repo named by hand may not exist (issue 17): the deploy lists the model repo once it does.
        (("license: mit\n", "license: mit\nmodels: [cxr-project/chestxray14-resnet50-lse]\n"), "models is written"),
    ],
)
def test_front_matter_that_would_not_start_the_app_is_refused(change, problem) -> None:
    deploy_space.check_front_matter(GOOD_README, PYPROJECT)  # the good one passes
    with pytest.raises(deploy_space.DeployError, match=re.escape(problem)):
        deploy_space.check_front_matter(GOOD_README.replace(*change), PYPROJECT)


def test_the_repository_readme_starts_the_space() -> None:
    deploy_space.check_front_matter((ROOT / "README.md").read_text(encoding="utf-8"), PYPROJECT)


def test_the_space_requirements_are_the_runtime_ones_with_cpu_torch() -> None:
    lines = deploy_space.space_requirements(PYPROJECT, CPU_BASIC).splitlines()
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    wanted = {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines[1:]}
    torch_pin = next(r for r in map(Requirement, PYPROJECT["project"]["dependencies"]) if r.name == "torch")
    assert str(wanted["torch"].specifier) == f"{torch_pin.specifier}+cpu"
    assert (
        str(wanted["torchvision"].specifier).endswith("+cpu") and str(wanted["gradio"].specifier) == f"=={GRADIO_PIN}"
    )
    assert wanted["gradio"].extras == {"mcp"}  # the MCP server
    # Training, test and pytorch-grad-cam packages (the last brings scikit-learn and scipy) stay off the Space, and
    # so does the ZeroGPU package on CPU hardware.
    assert not {"scikit-learn", "scipy", "tqdm", "jinja2", "pytest", "grad-cam", "spaces"} & set(wanted)


def _imported_distributions(paths: list[Path]) -> set[str]:
    """Canonical names of the installed distributions (other than cxr itself) providing the modules ``paths`` import."""
    providers = importlib.metadata.packages_distributions()
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return {canonicalize_name(dist) for module in modules for dist in providers.get(module, [])} - {"cxr"}


def _declared(*groups: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for group in groups for line in group}


def test_every_imported_package_is_declared_where_it_is_used() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    space = {
        canonicalize_name(Requirement(line).name)
        for line in deploy_space.space_requirements(PYPROJECT, CPU_BASIC).splitlines()[1:]
    }
    zero_gpu_space = _declared(deploy_space.space_requirements(PYPROJECT, ZERO_GPU).splitlines())
    zero_gpu_module = ROOT / "cxr" / "zerogpu.py"  # imports `spaces` only when it runs on ZeroGPU
    scoring_files = set((ROOT / "cxr" / "scoring").rglob("*.py"))  # `cxr score`: the extras score and scale
    # cxr/backends.py imports openvino only when an OpenVINO backend is asked for (openvino_available() first):
    # an optional runtime, which cxr[app] (the Space) installs.
    backends = ROOT / "cxr" / "backends.py"
    assert _imported_distributions([backends]) - _declared(project["dependencies"]) <= _declared(extras["app"])
    # cxr/overlay.py imports matplotlib only for a colormap other than the built-in jet (issue 18: the Space has none).
    overlay = ROOT / "cxr" / "overlay.py"
    assert _imported_distributions([overlay]) - _declared(project["dependencies"]) == {"matplotlib"}
    assert "matplotlib" in _declared(extras["train"]) and "matplotlib" not in space
    library = _imported_distributions(
        sorted(set((ROOT / "cxr").rglob("*.py")) - {zero_gpu_module, backends, overlay} - scoring_files)
    )
    assert {"torch", "numpy", "httpx2", "pillow"} <= library  # the scan sees them
    assert library <= _declared(project["dependencies"]), "cxr/ imports a package pyproject.toml does not declare"
    scoring = _imported_distributions(sorted(scoring_files))
    assert {"pyarrow", "ray"} <= scoring <= _declared(project["dependencies"], extras["score"], extras["scale"])
    assert _imported_distributions([zero_gpu_module]) - library == {"spaces"}
    assert {"spaces"} <= zero_gpu_space and _imported_distributions(
        [ROOT / "app.py", zero_gpu_module]
    ) <= zero_gpu_space
    assert _imported_distributions([ROOT / "app.py"]) <= space
    training = _imported_distributions(sorted((ROOT / "train").rglob("*.py")))
    assert {"scipy", "scikit-learn"} <= training <= _declared(project["dependencies"], extras["train"])
    tests = _imported_distributions([*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "bench").glob("*.py"))])
    assert "spaces" in tests  # the ZeroGPU tests use the real package
    assert tests <= _declared(
        project["dependencies"], extras["app"], extras["train"], extras["cams"], extras["zerogpu"], extras["dev"]
    )


def test_the_requirements_files_install_the_extras() -> None:
    def lines(name: str) -> list[str]:
        return [line for line in (ROOT / name).read_text().splitlines() if line.strip() and not line.startswith("#")]

    assert lines("requirements.txt") == ["-e .[app,train,cams]"]
    assert lines("requirements-dev.txt") == ["-e .[dev]"]
    assert "cxr[app,train,cams,zerogpu,docs]" in PYPROJECT["project"]["optional-dependencies"]["dev"]


@pytest.mark.parametrize("hardware", ["zero-gpu", "cpu-basic"])
def test_the_staged_space_folder_holds_the_files_and_the_written_requirements(tmp_path, hardware) -> None:
    profile = deploy_space.PROFILES[hardware]
    files = deploy_space.stage(tmp_path, PYPROJECT, profile)
    assert files == sorted([*deploy_space.space_files(ROOT), "requirements.txt"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == files
    assert (tmp_path / "requirements.txt").read_text() == deploy_space.space_requirements(PYPROJECT, profile)
    assert (tmp_path / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()
    staged, readme = (tmp_path / "README.md").read_text(), (ROOT / "README.md").read_text()
    card = SpaceCard(staged)
    assert (card.data.python_version, card.data.suggested_hardware) == (profile.python_version, profile.hardware)
    assert card.text == SpaceCard(readme).text  # the README itself as it is
    assert {k: v for k, v in card.data.to_dict().items() if k not in ("python_version", "suggested_hardware")} == {
        k: v for k, v in SpaceCard(readme).data.to_dict().items() if k not in ("python_version", "suggested_hardware")
    }
    deploy_space.check_front_matter(staged, PYPROJECT)
    thumbnails = sorted((ROOT / "examples" / "thumbnails").glob("*.jpg"))
    assert thumbnails and all(p.relative_to(ROOT).as_posix() in files for p in thumbnails)  # the example buttons
    # No model repo exists yet: the Space's front matter names none; once one exists, it names it.
    assert SpaceCard((tmp_path / "README.md").read_text(encoding="utf-8")).data.models is None
    repo = deploy_space.model_repo(PYPROJECT)
    assert repo == "cxr-project/chestxray14-resnet50-lse"
    deploy_space.stage(tmp_path / "published", PYPROJECT, profile, models=[repo])
    published = (tmp_path / "published" / "README.md").read_text(encoding="utf-8")
    assert SpaceCard(published).data.models == [repo]
    assert published.split("---", 2)[2] == (ROOT / "README.md").read_text(encoding="utf-8").split("---", 2)[2]


def _simple_index(folder: Path, wheels: list[str]) -> str:
    """A PEP 503 index on disk listing ``wheels`` (pip reads their names and tags, never the files)."""
    for wheel in wheels:
        page = folder / canonicalize_name(parse_wheel_filename(wheel)[0]) / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        with page.open("a") as f:
            f.write(f'<a href="../../files/{wheel}">{wheel}</a>\n')
    return folder.as_uri()


def _lowest_allowed(requirement: Requirement) -> str:
    return next(s.version for s in requirement.specifier if s.operator in ("==", ">="))


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[str, str]:
    """Some of the Space's requirements (one pip process each), pointed at indexes on disk, and the main index's URL.

    As on PyPI, numpy 2.4 has wheels for CPython 3.11 and up only (this index has no older numpy); the CPU index has
    torch and torchvision for CPython 3.11; gradio and pillow have a pure-Python wheel at their lowest allowed version.
    """
    root = tmp_path_factory.mktemp("indexes")
    kept = ("--extra-index-url", "torch==", "torchvision==", "numpy", "gradio", "pillow")
    requirements = "".join(
        line + "\n"
        for line in deploy_space.space_requirements(PYPROJECT, CPU_BASIC).splitlines()
        if line.startswith(kept)
    )
    wanted = [Requirement(line) for line in requirements.splitlines()[1:]]
    assert len(wanted) == len(kept) - 1
    linux = "manylinux_2_28_x86_64"
    cpu = [
        f"{r.name}-{_lowest_allowed(r)}-cp311-cp311-{linux}.whl" for r in wanted if r.name in ("torch", "torchvision")
    ]
    main = [f"numpy-2.4.6-{tag}-{tag}-{linux}.whl" for tag in ("cp311", "cp312")]
    main += [
        f"{r.name.replace('-', '_')}-{_lowest_allowed(r)}-py3-none-any.whl"
        for r in wanted
        if r.name not in ("torch", "torchvision", "numpy")
    ]
    cpu_url = _simple_index(root / "cpu", cpu)
    return requirements.replace(deploy_space.CPU_WHEELS, cpu_url), _simple_index(root / "pypi", main)


def test_requirements_with_wheels_for_the_space_python_pass(published) -> None:
    requirements, index = published
    deploy_space.check_published(requirements, "3.11", index_url=index)


def test_requirements_without_wheels_for_the_space_python_are_named(published) -> None:
    requirements, index = published
    with pytest.raises(deploy_space.DeployError, match=r"no wheel for CPython 3\.10") as refused:
        deploy_space.check_published(requirements, "3.10", index_url=index)
    named = str(refused.value).split(" for: ")[1]
    assert "numpy" in named and "torch==" in named and "torchvision==" in named and "gradio" not in named


def test_an_unreachable_index_is_a_clear_failure_not_a_pass() -> None:
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(deploy_space.DeployError, match=rf"cannot reach the package index http://127.0.0.1:{port}/"):
        deploy_space.check_published("numpy>=2\n", "3.11", index_url=f"http://127.0.0.1:{port}/simple")


@pytest.mark.parametrize(("hardware", "python"), [("zero-gpu", "3.12"), ("cpu-basic", "3.11"), ("t4-small", "3.11")])
def test_dry_run_offline_prints_the_front_matter_and_requirements_it_would_write(capsys, hardware, python) -> None:
    assert deploy_space.main(["--dry-run", "--offline", "--hardware", hardware]) == 0
    out, err = capsys.readouterr()
    profile = deploy_space.PROFILES[hardware]
    requirements = deploy_space.space_requirements(PYPROJECT, profile)
    assert "app.py\n" in out and out.endswith(f"requirements.txt (written for {hardware}):\n{requirements}")
    assert f"--offline: wheels for Python {python} not checked" in err
    printed = out.split(f"README.md front matter (written for {hardware}):\n")[1].split("requirements.txt (")[0]
    written = SpaceCard(printed + "\n# cxr\n").data
    assert (written.python_version, written.suggested_hardware, written.sdk) == (python, profile.hardware, "gradio")
    lines = requirements.splitlines()
    torch_line = next(line for line in lines if line.startswith("torch=="))
    if hardware.startswith("cpu-"):
        assert lines[0] == f"--extra-index-url {deploy_space.CPU_WHEELS}" and torch_line.endswith("+cpu")
        assert not [line for line in lines if line.startswith("spaces")]
    else:  # the default index's CUDA build, and on ZeroGPU the spaces package
        assert not [line for line in lines if line.startswith("--")] and "+" not in torch_line
        assert bool([line for line in lines if line.startswith("spaces")]) == (hardware == "zero-gpu")


def test_the_default_profile_is_zero_gpu_or_the_repository_variable(capsys, monkeypatch) -> None:
    monkeypatch.delenv("HF_SPACE_HARDWARE", raising=False)
    assert deploy_space.main(["--dry-run", "--offline"]) == 0
    assert "(written for zero-gpu)" in capsys.readouterr().out
    monkeypatch.setenv("HF_SPACE_HARDWARE", "cpu-upgrade")
    assert deploy_space.main(["--dry-run", "--offline"]) == 0
    assert "(written for cpu-upgrade)" in capsys.readouterr().out
    assert _workflow("deploy.yml")["jobs"]["deploy"]["env"] == {"HF_SPACE_HARDWARE": "${{ vars.HF_SPACE_HARDWARE }}"}


def test_every_spaces_hardware_flavor_has_a_profile_and_zero_gpu_follows_the_hub_docs() -> None:
    flavors = {h.value for h in SpaceHardware}
    assert {p.hardware for p in deploy_space.PROFILES.values()} == flavors
    assert set(deploy_space.PROFILES) == (flavors - {"zero-a10g"}) | {"zero-gpu"}
    # hub-docs spaces-zerogpu.md: Python 3.12.12 or 3.10.13, torch 2.8 or later.
    assert ZERO_GPU.python_version == "3.12" and ZERO_GPU.hardware == "zero-a10g" and not ZERO_GPU.cpu_torch
    torch_pin = next(r for r in map(Requirement, PYPROJECT["project"]["dependencies"]) if r.name == "torch")
    assert Version(next(iter(torch_pin.specifier)).version) >= Version("2.8")


def test_a_front_matter_hardware_that_spaces_do_not_have_is_refused() -> None:
    with pytest.raises(
        deploy_space.DeployError, match="suggested_hardware is 'zero-gpu', not a Spaces hardware flavor"
    ):
        deploy_space.check_front_matter(
            GOOD_README.replace("app_file:", "suggested_hardware: zero-gpu\napp_file:"), PYPROJECT
        )
