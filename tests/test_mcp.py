"""The app as an MCP server (Gradio 6), called with the `mcp` client library on a live server, and its API's
conventions read back from the live server's API info."""

from __future__ import annotations

import ast
import asyncio
import base64
import io
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from app import OVERLAY_SIDE
from tests.conftest import NIH_EXAMPLES, ROOT
from tests.live_server import LiveApp, running_app

TOOLS = {"predict", "cam", "model_info"}
ENDPOINTS = {f"/{name}" for name in TOOLS}


@pytest.fixture(scope="module")
def app(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_app(tiny_weights, tmp_path_factory.mktemp("mcp-app"), "--mcp") as live:
        yield live


@pytest.fixture(scope="module")
def client(app: LiveApp) -> Client:
    return Client(app.url, verbose=False, download_files=False, analytics_enabled=False)


def _readme_mcp_config() -> dict:
    readme = (ROOT / "docs" / "space.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{\s*\"mcpServers\".*?)```", readme, re.DOTALL)
    assert block, "docs/space.md has no MCP client config block"
    return json.loads(block.group(1))


def _mcp_url(app: LiveApp) -> str:
    """The live server's MCP endpoint, at the path the documented client config (docs/space.md) names."""
    (server,) = _readme_mcp_config()["mcpServers"].values()
    return app.url.rstrip("/") + urlparse(server["url"]).path


async def _session_calls(url: str, calls: list[tuple[str, dict, bool]]) -> tuple[list, list]:
    """List the tools, then make each (tool, arguments, with_progress) call in one MCP session."""

    async def ignore_progress(*_args) -> None:
        return None

    async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        results = [
            await session.call_tool(name, arguments, progress_callback=ignore_progress if progress else None)
            for name, arguments, progress in calls
        ]
    return tools, results


def _data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def test_the_readme_mcp_config_names_the_space_url_pattern_and_the_served_path(app: LiveApp) -> None:
    (server,) = _readme_mcp_config()["mcpServers"].values()
    assert re.fullmatch(r"https://[A-Za-z0-9-]+\.hf\.space/gradio_api/mcp/", server["url"])
    # The same path on the live server answers a browser with Gradio's MCP landing page.
    page = httpx.get(_mcp_url(app), timeout=30)
    assert page.status_code == 200 and "MCP" in page.text


def test_mcp_tools_describe_their_input_output_and_that_this_is_no_medical_device(app: LiveApp, client) -> None:
    sample = NIH_EXAMPLES[0]
    tools, (plain, with_progress, bad) = asyncio.run(
        _session_calls(
            _mcp_url(app),
            [
                ("predict", {"image": _data_url(sample, "image/png")}, False),
                ("predict", {"image": _data_url(sample, "image/png")}, True),
                ("predict", {"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, False),
            ],
        )
    )
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == TOOLS
    for name in ("predict", "cam"):
        description = by_name[name].description
        assert "frontal chest radiograph" in description and "not a medical device" in description
        assert "Returns:" in description and "heatmap" in description
        arguments = by_name[name].inputSchema["properties"]
        assert "PNG, JPEG or DICOM" in arguments["image"]["description"]
        assert all(argument["description"] for argument in arguments.values())  # each from the docstring's Args
    assert "not a medical device" in by_name["model_info"].description
    assert by_name["cam"].inputSchema["properties"]["label"]["enum"] == client.predict(api_name="/model_info")["labels"]

    # The same numbers as /predict through gradio_client, for the same file sent as a base64 data URL.
    expected, _ = client.predict(handle_file(str(sample)), api_name="/predict")
    record, overlay_file = ast.literal_eval(plain.content[0].text)  # Gradio writes the outputs' Python repr
    assert not plain.isError and record == expected and overlay_file["path"].endswith(".jpeg")
    # With a progress token Gradio returns each output as its own content: the record, then the overlay image.
    assert ast.literal_eval(with_progress.content[0].text) == expected
    image = with_progress.content[1]
    assert image.type == "image" and image.mimeType == "image/jpeg"
    with Image.open(io.BytesIO(base64.b64decode(image.data))) as overlay:
        width, height = Image.open(sample).size  # drawn at the size the page shows, its caption band beneath
        assert overlay.size[0] == round(width * OVERLAY_SIDE / max(width, height)) and overlay.size[1] > OVERLAY_SIDE
        assert np.asarray(overlay).ndim == 3
    # A file that is no image is a tool error with the library's readable message; the server keeps serving.
    assert bad.isError and "not a recognised image" in bad.content[0].text


def test_cam_tool_equals_the_cam_endpoint(app: LiveApp, client) -> None:
    sample = NIH_EXAMPLES[1]
    _, (result,) = asyncio.run(
        _session_calls(
            _mcp_url(app), [("cam", {"image": _data_url(sample, "image/png"), "label": "Effusion", "opacity": 0.4}, 0)]
        )
    )
    expected, _ = client.predict(handle_file(str(sample)), "Effusion", 0.4, api_name="/cam")
    record, _ = ast.literal_eval(result.content[0].text)
    assert record == expected and record["label"] == "Effusion"


def test_every_endpoint_is_described_and_every_page_event_is_kept_out_of_the_api(app: LiveApp, client) -> None:
    documented = client.view_api(print_info=False, return_format="dict")
    assert set(documented["named_endpoints"]) == ENDPOINTS and documented["unnamed_endpoints"] == {}
    info = httpx.get(f"{app.url}gradio_api/info", params={"all_endpoints": "true"}, timeout=30).json()
    assert set(info["named_endpoints"]) == ENDPOINTS and info["unnamed_endpoints"] == {}  # no undocumented extras
    for name, endpoint in info["named_endpoints"].items():
        assert endpoint["api_visibility"] == "public", name
        assert len(endpoint["description"]) > 40 and "not a medical device" in endpoint["description"], name


def test_only_the_three_endpoints_are_public_every_other_event_is_private(tiny_weights: Path) -> None:
    import app as space_app
    from cxr.serving import load_served_model

    demo = space_app.build_demo(load_served_model(str(tiny_weights), device="cpu"))
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == TOOLS
    others = [fn for fn in demo.fns.values() if fn.api_visibility != "public"]
    assert others and {fn.api_visibility for fn in others} <= {"private", "undocumented"}
