"""The documentation site: ``mkdocs build --strict`` passes (no broken link, no reference to a renamed function),
the API reference documents every public name, and the README's links into the site land on built pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import cxr
from tests.conftest import ROOT

pytest.importorskip("mkdocs", reason="the docs extra (mkdocs-material, mkdocstrings[python]) is not installed")


def _mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):  # mkdocs.yml names Python objects (!!python/name:) that safe_load refuses
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)


SITE_URL = _mkdocs_config()["site_url"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built the way CI and the Pages workflow build it, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_site_builds_strictly_with_every_page_of_the_nav(site: Path) -> None:
    def pages(nav: list) -> list[str]:
        found = []
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found += pages(value) if isinstance(value, list) else [value]
        return found

    nav = pages(_mkdocs_config()["nav"])
    assert {"index.md", "getting-started.md", "space.md", "library.md", "reference/api.md"} <= set(nav)
    for page in nav:
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), page
        assert "<h1" in built.read_text(encoding="utf-8"), page


def test_the_api_reference_documents_every_public_name(site: Path) -> None:
    html = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(cxr\.[\w.]+)"', html))
    for name in cxr.__all__:  # documented where it is defined: cxr's table of exports names the module
        assert f"{cxr._EXPORTS[name]}.{name}" in anchors, f"cxr.{name} is not in the API reference"
    for function in ("logits_and_grad_cams", "library_cams", "normalize_maps", "upsample_map"):
        assert f"cxr.cam.{function}" in anchors
    first_line = cxr.Predictor.__doc__.splitlines()[0]  # the docstrings themselves, rendered
    assert first_line.split(";")[0].replace("``", "") in re.sub(r"<[^>]+>", "", html)


def test_the_readmes_links_into_the_site_land_on_built_pages(site: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(rf"\]\(({re.escape(SITE_URL)}[^)\s]*)\)", readme)
    assert len(links) >= 8, "the README links into the documentation site"
    for link in links:
        path, _, anchor = link.removeprefix(SITE_URL).partition("#")
        page = site / path / "index.html" if not path.endswith(".html") else site / path
        assert page.is_file(), link
        if anchor:
            assert f'id="{anchor}"' in page.read_text(encoding="utf-8"), link
