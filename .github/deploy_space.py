"""Sync what the Hugging Face Space runs (app, library, starter weights, examples, README) to the Space repo.

Used by ``.github/workflows/deploy.yml`` after the tests pass on main. ``--hardware`` picks the Space's
profile (see :data:`PROFILES`; default ``$HF_SPACE_HARDWARE``, else ``zero-gpu``, the free one): the README's
Spaces front matter is written with that profile's ``python_version`` and ``suggested_hardware``, and the
Space's ``requirements.txt`` from pyproject.toml: the library's and the app's dependencies only, with CPU
builds of torch and torchvision from the PyTorch CPU wheel index on CPU hardware (the CUDA build would add
~4 GB) and the default index's CUDA build plus the ``zerogpu`` extra (``spaces``) on ZeroGPU. ``--dry-run``
checks the written front matter and that every Space requirement has a wheel for the profile's Python on
Linux x86-64, then lists the files and prints the front matter and the requirements; ``--offline`` skips the
wheel check (it needs the package indexes).

    python .github/deploy_space.py --space ORG/NAME [--hardware zero-gpu|cpu-basic|...] [--dry-run] [--offline]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceHardware
from huggingface_hub.utils import filter_repo_objects
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# What the Space needs, and nothing else: no training code, tests, benchmarks or CI files. Its
# requirements.txt is not among them: space_requirements() writes it.
SPACE_FILES = [
    "app.py", "README.md", "LICENSE", "cxr/*.py", "cxr/starter/*", "examples/*.png", "examples/*.md",
    "examples/thumbnails/*.jpg",  # the page's example buttons (app.THUMBNAILS)
    "docs/images/*.png",  # the README's screenshot, so the Space's card shows it too
]  # fmt: skip
NEVER = ["**/__pycache__/**", "*.pyc"]
REQUIREMENTS_FILE = "requirements.txt"
README_FILE = "README.md"  # one of SPACE_FILES, staged with the profile's front matter
PYPI = "https://pypi.org/simple"
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"  # Spaces install requirements.txt with pip, which honours this
CPU_BUILDS = {"torch", "torchvision"}  # pinned with ==, served as VERSION+cpu from CPU_WHEELS
# Spaces run CPython on x86-64 Linux with a recent glibc; pip also accepts older manylinux tags for this one.
SPACE_PLATFORM = "manylinux_2_28_x86_64"
# Environment variables that would add this machine's own package sources to pip's search: "published" means
# on the indexes named here, not on a local mirror or wheel folder.
LOCAL_PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT")


class DeployError(RuntimeError):
    """The checkout cannot be deployed as it is; the message says why."""


@dataclass(frozen=True)
class Profile:
    """How the Space is built for one kind of Spaces hardware.

    Attributes:
        hardware: the Spaces hardware flavor (a :class:`huggingface_hub.SpaceHardware` value), written as the
            front matter's ``suggested_hardware`` (a hint for duplicates: the owner still picks it in the settings).
        python_version: the front matter's ``python_version``.
        cpu_torch: torch and torchvision as CPU builds from :data:`CPU_WHEELS`; else the default index's CUDA build.
        extras: the pyproject.toml extras the Space installs besides the library's own dependencies.
    """

    hardware: str
    python_version: str
    cpu_torch: bool
    extras: tuple[str, ...] = ("app",)


ZERO_GPU = "zero-gpu"  # the free hardware; its Spaces flavor id is still "zero-a10g", although it runs H200 slices
# ZeroGPU (hub-docs spaces-zerogpu.md): Gradio 4+, torch >= 2.8, Python 3.12.12 or 3.10.13 (this project needs
# 3.11+), GPU functions under @spaces.GPU from the `spaces` package, which the `zerogpu` extra adds.
PROFILES: dict[str, Profile] = {
    ZERO_GPU: Profile(SpaceHardware.ZERO_A10G.value, "3.12", cpu_torch=False, extras=("app", "zerogpu")),
    **{
        h.value: Profile(h.value, "3.11", cpu_torch=h.value.startswith("cpu-"))
        for h in SpaceHardware
        if h is not SpaceHardware.ZERO_A10G
    },
}


def space_files(root: Path = ROOT) -> list[str]:
    """Paths (relative, POSIX) under ``root`` that the upload copies, with huggingface_hub's own filter."""
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, allow_patterns=SPACE_FILES, ignore_patterns=NEVER))


def space_requirements(pyproject: dict, profile: Profile) -> str:
    """The Space's requirements.txt: the library's and the profile's extras' dependencies, torch for its hardware."""
    project = pyproject["project"]
    extras = [line for extra in profile.extras for line in project["optional-dependencies"][extra]]
    lines = [f"--extra-index-url {CPU_WHEELS}"] if profile.cpu_torch else []
    for line in [*project["dependencies"], *extras]:
        requirement = Requirement(line)
        if profile.cpu_torch and canonicalize_name(requirement.name) in CPU_BUILDS:
            pins = [s.version for s in requirement.specifier if s.operator == "=="]
            if len(pins) != 1:
                raise DeployError(f"pyproject.toml must pin {requirement.name}==VERSION for its CPU build.")
            requirement.specifier = SpecifierSet(f"=={pins[0]}+cpu")
        lines.append(str(requirement))
    return "\n".join(lines) + "\n"


def space_readme(readme: str, profile: Profile) -> str:
    """``readme`` with its Spaces front matter set to the profile's ``python_version`` and ``suggested_hardware``."""
    card = SpaceCard(readme)
    card.data.python_version = profile.python_version
    card.data.suggested_hardware = profile.hardware
    return str(card)


def front_matter(readme: str) -> str:
    """The YAML front matter block of ``readme``, with its ``---`` lines."""
    card = SpaceCard(readme)
    return card.content[: len(card.content) - len(card.text)].rstrip() + "\n"


def check_front_matter(readme: str, pyproject: dict) -> None:
    """Refuse a README whose Spaces front matter would not start ``app.py`` on the pinned Gradio and Python."""
    data = SpaceCard(readme).data
    app = [Requirement(line) for line in pyproject["project"]["optional-dependencies"]["app"]]
    pinned = [str(s.version) for r in app if r.name == "gradio" for s in r.specifier if s.operator == "=="]
    requires_python = SpecifierSet(pyproject["project"]["requires-python"])
    problems = []
    if data.sdk != "gradio":
        problems.append(f"sdk is {data.sdk!r}, not 'gradio'")
    if data.app_file != "app.py":
        problems.append(f"app_file is {data.app_file!r}, not 'app.py'")
    if not pinned:
        problems.append("the app extra of pyproject.toml does not pin gradio==VERSION")
    elif str(data.sdk_version) != pinned[0]:
        problems.append(f"sdk_version is {data.sdk_version!r} but pyproject.toml pins gradio=={pinned[0]}")
    if data.python_version is None:
        problems.append(f"python_version is not set (Spaces then use Python 3.10; the project needs {requires_python})")
    elif not isinstance(data.python_version, str) or not re.fullmatch(r"3\.\d+(\.\d+)?", data.python_version):
        # Unquoted, YAML reads 3.10 as the number 3.1.
        problems.append(f'python_version is {data.python_version!r}, not a quoted version such as "3.11"')
    elif data.python_version not in requires_python:
        problems.append(f"python_version is {data.python_version!r} but the project needs Python {requires_python}")
    hardware = getattr(data, "suggested_hardware", None)
    if hardware is not None and hardware not in {h.value for h in SpaceHardware}:
        problems.append(f"suggested_hardware is {hardware!r}, not a Spaces hardware flavor")
    if data.models:
        problems.append("models is written by the deploy, and only for model repos that exist on the Hub")
    if problems:
        raise DeployError("README.md front matter: " + "; ".join(problems) + ".")


def model_repo(pyproject: dict) -> str:
    """The project's model repo on the Hub, from the Model URL of pyproject.toml (``ORG/NAME``)."""
    return pyproject["project"]["urls"]["Model"].removeprefix("https://huggingface.co/")


def with_models(readme: str, models: Sequence[str]) -> str:
    """The README with its Spaces front matter listing ``models`` (none: no ``models`` key at all)."""
    card = SpaceCard(readme)
    card.data.models = list(models) or None
    return str(card)


def check_published(requirements: str, python_version: str, index_url: str = PYPI) -> None:
    """Refuse requirements of which one has no wheel for CPython ``python_version`` on x86-64 Linux.

    pip itself reads the indexes (``index_url`` and the ``--extra-index-url`` lines of ``requirements``) and
    matches the wheel tags, as the Space's own ``pip install`` will; only direct requirements are checked.
    """
    extra_indexes = re.findall(r"^--extra-index-url\s+(\S+)", requirements, flags=re.MULTILINE)
    wanted = [Requirement(line) for line in requirements.splitlines() if line.strip() and line[0] not in "#-"]
    for url in (index_url, *extra_indexes):
        _check_reachable(url)
    index_args = ["--index-url", index_url, *(arg for url in extra_indexes for arg in ("--extra-index-url", url))]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each look-up is a pip process waiting on the network
        found = list(pool.map(lambda r: _published_versions(r.name, python_version, index_args), wanted))
    missing = [str(r) for r, versions in zip(wanted, found, strict=True) if not list(r.specifier.filter(versions))]
    if missing:
        indexes = ", ".join((index_url, *extra_indexes))
        raise DeployError(
            f"no wheel for CPython {python_version} on Linux x86-64 ({SPACE_PLATFORM}) on {indexes} for: "
            + "; ".join(missing)
            + ". Set python_version in the README front matter to a Python they publish wheels for, or change the"
            " requirements."
        )


def _check_reachable(url: str) -> None:
    """Raise a DeployError naming ``url`` if an http(s) index does not answer (any HTTP status is an answer)."""
    if not url.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DeployError(
            f"cannot reach the package index {url} ({reason}), so the Space's wheels were not checked. Run where"
            " the indexes can be reached, or pass --offline to check only the front matter."
        ) from None


def _published_versions(name: str, python_version: str, index_args: Iterable[str]) -> list[str]:
    """Versions of ``name`` with a wheel for the Space's Python and platform, as ``pip index versions`` lists them."""
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_PIP_SOURCES}
    env["PIP_CONFIG_FILE"] = os.devnull  # no configured mirrors or wheel folders either
    command = [sys.executable, "-m", "pip", "index", "versions", name, "--python-version", python_version]
    command += ["--implementation", "cp", "--platform", SPACE_PLATFORM, "--only-binary=:all:", *index_args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if "No matching distribution found" in result.stderr:
        return []
    listed = re.search(r"^Available versions: (.*)$", result.stdout, flags=re.MULTILINE)
    if result.returncode != 0 or not listed:
        raise DeployError(f"`pip index versions {name}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return listed.group(1).split(", ")


def stage(folder: Path, pyproject: dict, profile: Profile, root: Path = ROOT, models: Sequence[str] = ()) -> list[str]:
    """Lay out in ``folder`` exactly what the Space gets: its files and its generated requirements.txt, with the
    README's front matter written for the profile and listing ``models`` (the model repos that exist on the Hub)."""
    files = space_files(root)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, folder / name)
    readme = folder / README_FILE
    readme.write_text(with_models(space_readme(readme.read_text(encoding="utf-8"), profile), models), encoding="utf-8")
    (folder / REQUIREMENTS_FILE).write_text(space_requirements(pyproject, profile), encoding="utf-8")
    return sorted([*files, REQUIREMENTS_FILE])


def deploy(space_id: str, token: str, commit: str | None, pyproject: dict, profile: Profile) -> str:
    """Upload the Space's files in one commit, deleting files there that the checkout no longer has.

    The front matter names the project's model repo only once it exists (``python -m train publish`` creates it).
    """
    api = HfApi(token=token)
    repo = model_repo(pyproject)
    with tempfile.TemporaryDirectory(prefix="cxr-space-") as folder:
        files = stage(Path(folder), pyproject, profile, models=[repo] if api.repo_exists(repo) else [])
        info = api.upload_folder(
            repo_id=space_id,
            repo_type="space",
            folder_path=folder,
            delete_patterns=[*SPACE_FILES, REQUIREMENTS_FILE],  # a module deleted here is deleted there
            commit_message=f"Deploy {commit[:12] if commit else 'local checkout'} from GitHub",
        )
    return f"{len(files)} files -> {info.commit_url}"


def _read(name: str) -> str:
    try:
        return (ROOT / name).read_text(encoding="utf-8")
    except OSError as err:
        raise DeployError(f"{name} cannot be read ({err.strerror}).") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=os.environ.get("HF_SPACE_ID"), help="Space repo id (default $HF_SPACE_ID)")
    parser.add_argument("--dry-run", action="store_true", help="check and list the files; upload nothing")
    parser.add_argument("--offline", action="store_true", help="skip the check of the requirements' wheels")
    parser.add_argument(
        "--hardware", choices=list(PROFILES), default=os.environ.get("HF_SPACE_HARDWARE") or ZERO_GPU,
        help=f"the Space's hardware profile (default $HF_SPACE_HARDWARE, else {ZERO_GPU})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    profile = PROFILES[args.hardware]
    try:
        pyproject = tomllib.loads(_read("pyproject.toml"))
        readme = space_readme(_read(README_FILE), profile)
        check_front_matter(readme, pyproject)
        requirements = space_requirements(pyproject, profile)
        if args.offline:
            print(f"deploy: --offline: wheels for Python {profile.python_version} not checked", file=sys.stderr)
        else:
            check_published(requirements, profile.python_version)
        if args.dry_run:
            print("\n".join(space_files()))
            print(f"{README_FILE} front matter (written for {args.hardware}):\n{front_matter(readme)}", end="")
            print(f"{REQUIREMENTS_FILE} (written for {args.hardware}):\n{requirements}", end="")
            return 0
        token = os.environ.get("HF_TOKEN")
        if not args.space or not token:
            raise DeployError("set HF_SPACE_ID (or --space) and HF_TOKEN to deploy.")
        print(deploy(args.space, token, os.environ.get("GITHUB_SHA"), pyproject, profile))
    except DeployError as err:
        print(f"deploy: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
