"""Sync what the Hugging Face Space runs (app, library, requirements, examples, README) to the Space repo.

Used by ``.github/workflows/deploy.yml`` after the tests pass on main. ``--dry-run`` checks the README's
Spaces front matter and lists the files, without network access.

    python .github/deploy_space.py --space ORG/NAME [--dry-run]     # token from HF_TOKEN
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard
from huggingface_hub.utils import filter_repo_objects

ROOT = Path(__file__).resolve().parents[1]
# What the Space needs, and nothing else: no training code, tests, benchmarks or CI files.
SPACE_FILES = ["app.py", "requirements.txt", "README.md", "LICENSE", "cxr/*.py", "examples/*.png", "examples/*.md"]
NEVER = ["**/__pycache__/**", "*.pyc"]


class DeployError(RuntimeError):
    """The checkout cannot be deployed as it is; the message says why."""


def space_files(root: Path = ROOT) -> list[str]:
    """Paths (relative, POSIX) under ``root`` that the upload sends, with huggingface_hub's own filter."""
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, allow_patterns=SPACE_FILES, ignore_patterns=NEVER))


def check_front_matter(readme: str, requirements: str) -> None:
    """Refuse a README whose Spaces front matter would not start ``app.py`` on the pinned Gradio."""
    data = SpaceCard(readme).data
    pinned = re.search(r"^gradio==(\S+)", requirements, flags=re.MULTILINE)
    problems = []
    if data.sdk != "gradio":
        problems.append(f"sdk is {data.sdk!r}, not 'gradio'")
    if data.app_file != "app.py":
        problems.append(f"app_file is {data.app_file!r}, not 'app.py'")
    if not pinned:
        problems.append("requirements.txt does not pin gradio==VERSION")
    elif str(data.sdk_version) != pinned.group(1):
        problems.append(f"sdk_version is {data.sdk_version!r} but requirements.txt pins gradio=={pinned.group(1)}")
    if problems:
        raise DeployError("README.md front matter: " + "; ".join(problems) + ".")


def deploy(space_id: str, token: str, commit: str | None) -> str:
    """Upload the Space's files in one commit, deleting files there that the checkout no longer has."""
    info = HfApi(
        token=token
    ).upload_folder(
        repo_id=space_id,
        repo_type="space",
        folder_path=ROOT,
        allow_patterns=SPACE_FILES,
        ignore_patterns=NEVER,
        delete_patterns=SPACE_FILES,  # a module deleted here is deleted there
        commit_message=f"Deploy {commit[:12] if commit else 'local checkout'} from GitHub",
    )
    return info.commit_url


def _read(name: str) -> str:
    try:
        return (ROOT / name).read_text(encoding="utf-8")
    except OSError as err:
        raise DeployError(f"{name} cannot be read ({err.strerror}).") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=os.environ.get("HF_SPACE_ID"), help="Space repo id (default $HF_SPACE_ID)")
    parser.add_argument("--dry-run", action="store_true", help="check and list the files; upload nothing")
    args = parser.parse_args(argv)
    try:
        check_front_matter(_read("README.md"), _read("requirements.txt"))
        files = space_files()
        if args.dry_run:
            print("\n".join(files))
            return 0
        token = os.environ.get("HF_TOKEN")
        if not args.space or not token:
            raise DeployError("set HF_SPACE_ID (or --space) and HF_TOKEN to deploy.")
        print(f"{len(files)} files -> {deploy(args.space, token, os.environ.get('GITHUB_SHA'))}")
    except DeployError as err:
        print(f"deploy: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
