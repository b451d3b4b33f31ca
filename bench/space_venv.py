"""Size of the Space's virtual environment for one hardware profile, built for real with pip.

    python -m bench.space_venv [--hardware cpu-basic] [--replace torch=/path/to/torch.whl] [--replace torchvision==X]

Writes the profile's requirements.txt exactly as ``.github/deploy_space.py`` does, creates a fresh venv with
this Python, installs them, and reports the packages and the installed files' size (apparent bytes), with and
without the bytecode pip compiles at install, and the largest packages. ``--replace NAME=REQUIREMENT`` swaps one
requirement (a wheel path or a specifier, installed without dependencies first): where an index the profile
names cannot be reached, e.g. the PyTorch CPU index from the development machine, the nearest build at hand
stands in, and the report says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def _deploy_script():
    spec = importlib.util.spec_from_file_location("deploy_space", ROOT / ".github" / "deploy_space.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def tree_bytes(folder: Path) -> tuple[int, int]:
    """(all files, bytecode under __pycache__) of ``folder``, apparent bytes."""
    total = cached = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            total += size
            cached += size if "__pycache__" in path.parts else 0
    return total, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hardware", default="cpu-basic")
    parser.add_argument("--replace", action="append", default=[], metavar="NAME=REQUIREMENT")
    args = parser.parse_args()
    deploy = _deploy_script()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    written = deploy.space_requirements(pyproject, deploy.PROFILES[args.hardware]).splitlines()
    swaps = dict(item.split("=", 1) for item in args.replace)
    swapped = {canonicalize_name(name) for name in swaps}
    # The CPU index serves only the CPU builds: with both replaced, pip need not ask it for every package.
    needs_index = not deploy.CPU_BUILDS <= swapped
    kept = [
        line for line in written
        if (needs_index if line.startswith("--") else canonicalize_name(Requirement(line).name) not in swapped)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cxr-space-venv-") as tmp:
        venv = Path(tmp) / "venv"
        python = venv / "bin" / "python"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        for name, requirement in swaps.items():
            wheel_or_spec = requirement if "/" in requirement else f"{name}{requirement}"
            subprocess.run([*pip, "--no-deps", wheel_or_spec], check=True)
        (Path(tmp) / "requirements.txt").write_text("\n".join(kept) + "\n")
        subprocess.run([*pip, "-r", str(Path(tmp) / "requirements.txt")], check=True)
        site = next((venv / "lib").glob("python*/site-packages"))
        packages = sorted(site.glob("*.dist-info"))
        total, cached = tree_bytes(venv)
        sizes = sorted(
            ((tree_bytes(p)[0], p.name) for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")),
            reverse=True,
        )
    print(f"profile {args.hardware}, Python {sys.version.split()[0]}; stand-ins: {swaps or 'none'}")
    bare = total - cached
    print(f"{len(packages)} packages; {total / MIB:,.0f} MiB ({total / 1e9:.2f} GB) installed, of which "
          f"{cached / MIB:,.0f} MiB bytecode (without it {bare / MIB:,.0f} MiB, {bare / 1e9:.2f} GB)")  # fmt: skip
    print("largest: " + ", ".join(f"{name} {size / MIB:.0f}" for size, name in sizes[:8]) + " (MiB)")


if __name__ == "__main__":
    main()
