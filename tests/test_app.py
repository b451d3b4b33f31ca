"""The real Space on 127.0.0.1, called with gradio_client: answers equal the library's, errors are readable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import HfApi
from PIL import Image

from app import OVERLAY_SIDE
from cxr.io import MAX_FILE_BYTES, InvalidImageError, load_image
from cxr.labels import CHESTXRAY14_LABELS
from cxr.predictor import Predictor
from cxr.serving import first_heatmap
from cxr.sources import DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION, STARTER_DIR
from cxr.weights import save_model, sha256_of
from tests.bad_inputs import PATIENT_IDENTIFIERS, build_corpus, identified_dicom
from tests.conftest import NIH_EXAMPLES, ROOT, make_model
from tests.hub_standin import HubStandIn
from tests.live_server import LiveApp, assert_same_picture, running_app

FORGET_AFTER_S = 20  # the server deletes uploads and renders this long after writing them


@pytest.fixture(scope="module")
def app(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_app(tiny_weights, tmp_path_factory.mktemp("app"), "--forget-after", str(FORGET_AFTER_S)) as live:
        yield live


@pytest.fixture(scope="module")
def client(app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> Client:
    downloads = tmp_path_factory.mktemp("client-downloads")
    return Client(app.url, verbose=False, download_files=downloads, analytics_enabled=False)


@pytest.fixture(scope="module")
def predictor(tiny_weights: Path) -> Predictor:
    return Predictor.from_pretrained(tiny_weights, device="cpu")


def _rgb(path: str) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def test_the_readme_client_example_runs_against_the_app(app: LiveApp, predictor, tiny_weights, tmp_path) -> None:
    """The documented gradio_client example, taken from docs/space.md as written, run against the live server."""
    readme = (ROOT / "docs" / "space.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(from gradio_client import .*?)```", readme, re.DOTALL).group(1)
    assert "http://127.0.0.1:7860/" in example
    script = tmp_path / "example.py"
    script.write_text(example.replace("http://127.0.0.1:7860/", app.url))
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = predictor.predict(ROOT / "examples" / "00000001_000.png")
    positive, probability_and_threshold, overlay, chance_and_empty, caption, sha256 = result.stdout.splitlines()[-6:]
    assert positive == str(expected.positive)
    probability, threshold = map(float, probability_and_threshold.split())
    assert abs(probability - expected.probability_by_label["Cardiomegaly"]) < 1e-5 and threshold == 0.5
    overlay_label, overlay_path = overlay.split(" ", 1)
    assert overlay_label == first_heatmap(expected)[0]
    with Image.open(overlay_path) as jpeg:  # the radiograph, with the caption on a band below it
        assert jpeg.format == "JPEG" and jpeg.size[0] == OVERLAY_SIDE and OVERLAY_SIDE < jpeg.size[1] < 600
    assert chance_and_empty == f"{expected.at_chance} {list(expected.empty_maps)}"
    assert caption == expected.caption("Effusion")
    assert sha256 == sha256_of(tiny_weights / "model.safetensors")


def test_the_documented_curl_calls_answer_like_the_library(app: LiveApp, predictor, tmp_path) -> None:
    """docs/space.md's curl block, as written (bash, with the live server's URL), answers like ``Predictor``."""
    page = (ROOT / "docs" / "space.md").read_text(encoding="utf-8")
    block = re.search(r"## With curl\n.*?```bash\n(.*?)```", page, re.DOTALL).group(1)
    assert block.startswith("URL=http://127.0.0.1:7860 ")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = block.replace("URL=http://127.0.0.1:7860", f"URL={app.url.rstrip('/')}", 1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `python`
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    expected = predictor.predict(ROOT / "examples" / "00000001_000.png")
    assert result.stdout.strip().splitlines()[-1] == str(expected.positive)
    record, overlay = json.loads((tmp_path / "answer.json").read_text())
    got = np.array([record["probabilities"][label] for label in CHESTXRAY14_LABELS])
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-5, rtol=0)
    assert record["labels"] == list(CHESTXRAY14_LABELS) and overlay["url"].startswith(app.url.rstrip("/"))


@pytest.mark.parametrize("image", NIH_EXAMPLES, ids=lambda p: p.stem)
def test_predict_equals_the_library_predictor_on_real_nih_images(client: Client, predictor, image: Path) -> None:
    answer, overlay_path = client.predict(handle_file(str(image)), api_name="/predict")
    expected = predictor.predict(image)

    assert answer["labels"] == list(CHESTXRAY14_LABELS)
    assert list(answer["probabilities"]) == list(CHESTXRAY14_LABELS)
    got = np.array([answer["probabilities"][label] for label in CHESTXRAY14_LABELS])
    assert ((got >= 0) & (got <= 1)).all()
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-5, rtol=0)
    assert answer["thresholds"] == dict(zip(CHESTXRAY14_LABELS, expected.thresholds.tolist(), strict=True))
    assert answer["positive"] == expected.positive
    top, _ = first_heatmap(expected)
    assert answer["overlay_label"] == top
    assert answer["empty_maps"] == list(expected.empty_maps) and answer["at_chance"] == expected.at_chance
    assert_same_picture(_rgb(overlay_path), expected.overlay(top, opacity=0.5, side=OVERLAY_SIDE))
    height, width = load_image(image).shape  # drawn at the size the page shows it, the radiograph's proportions kept
    shown = (round(height * OVERLAY_SIDE / max(height, width)), round(width * OVERLAY_SIDE / max(height, width)))
    assert _rgb(overlay_path).shape[1:] == (shown[1], 3) and _rgb(overlay_path).shape[0] > shown[0]  # caption below


def test_cam_endpoint_draws_the_chosen_label_with_its_probability(client: Client, predictor) -> None:
    image = NIH_EXAMPLES[0]
    expected = predictor.predict(image)
    overlays = {}
    for label in ("Effusion", "Cardiomegaly"):
        answer, overlay_path = client.predict(handle_file(str(image)), label, 0.7, api_name="/cam")
        i = CHESTXRAY14_LABELS.index(label)
        assert answer["label"] == label
        assert answer["probability"] == pytest.approx(float(expected.probabilities[i]), abs=1e-5)
        assert answer["threshold"] == pytest.approx(float(expected.thresholds[i]))
        assert answer["positive"] == (label in expected.positive)
        overlays[label] = _rgb(overlay_path)
        assert_same_picture(overlays[label], expected.overlay(label, opacity=0.7, side=OVERLAY_SIDE))
    effusion, cardiomegaly = (overlays[label][:OVERLAY_SIDE].astype(int) for label in ("Effusion", "Cardiomegaly"))
    changed = np.abs(effusion - cardiomegaly).max(axis=2) > 10  # in the pictures, above their captions
    assert changed.mean() > 0.05  # two labels' maps differ across much of the image
    with pytest.raises(AppError, match="Fracture is not in the list of choices"):
        client.predict(handle_file(str(image)), "Fracture", 0.5, api_name="/cam")


def test_model_info_names_the_served_weights(client: Client, tiny_weights: Path) -> None:
    info = client.predict(api_name="/model_info")
    assert info["weights_sha256"] == sha256_of(tiny_weights / "model.safetensors")
    assert info["labels"] == list(CHESTXRAY14_LABELS)
    assert info["trained"] is False
    assert info["image_size"] == 256 and info["trunk"] == "resnet18"
    assert str(tiny_weights.parent) not in json.dumps(info)  # the server's own paths stay private


def test_every_bad_file_gets_its_readable_message_and_the_server_keeps_serving(client: Client, tmp_path: Path) -> None:
    bad = [case for case in build_corpus() if case.expect == "error"]
    for case in bad:
        path = tmp_path / case.name
        path.write_bytes(case.data)
        with pytest.raises(InvalidImageError) as expected:
            load_image(case.data, name=case.name)
        with pytest.raises(AppError) as got:
            client.predict(handle_file(str(path)), api_name="/predict")
        assert str(got.value) == str(expected.value), case.name
    answer, _ = client.predict(handle_file(str(NIH_EXAMPLES[1])), api_name="/predict")
    assert len(answer["probabilities"]) == 14


def test_uploads_over_the_size_limit_are_refused_by_the_server(client: Client, app: LiveApp, tmp_path) -> None:
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with open(huge, "rb") as f:  # straight to the upload route: gradio_client would refuse it before sending
        response = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("huge.png", f)}, timeout=120)
    assert response.status_code == 413 and f"maximum allowed size of {MAX_FILE_BYTES} bytes" in response.text
    assert not _files_named(app.upload_dir, "huge.png")
    answer, _ = client.predict(handle_file(str(NIH_EXAMPLES[0])), api_name="/predict")
    assert len(answer["probabilities"]) == 14


def test_sixteen_concurrent_calls_all_succeed(client: Client, predictor) -> None:
    images = [NIH_EXAMPLES[i % len(NIH_EXAMPLES)] for i in range(16)]
    jobs = [client.submit(handle_file(str(image)), api_name="/predict") for image in images]
    expected = {image: predictor.predict(image).probabilities for image in set(images)}
    for image, job in zip(images, jobs, strict=True):
        answer, overlay_path = job.result(timeout=300)
        got = [answer["probabilities"][label] for label in CHESTXRAY14_LABELS]
        np.testing.assert_allclose(got, expected[image], atol=1e-5, rtol=0)
        assert Path(overlay_path).is_file()


def test_dicom_identifiers_appear_in_no_answer_log_or_file(client: Client, app: LiveApp, predictor, tmp_path) -> None:
    dicom = tmp_path / "study.dcm"
    dicom.write_bytes(identified_dicom())
    answer, overlay_path = client.predict(handle_file(str(dicom)), api_name="/predict")
    cam_answer, cam_path = client.predict(handle_file(str(dicom)), "Edema", 0.5, api_name="/cam")

    expected = predictor.predict(dicom)
    got = [answer["probabilities"][label] for label in CHESTXRAY14_LABELS]
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-5, rtol=0)
    outputs = [json.dumps(answer), json.dumps(cam_answer), app.log()]
    outputs += [Path(p).read_bytes().decode("latin-1") for p in (overlay_path, cam_path)]  # image metadata too
    for text in outputs:
        for value in PATIENT_IDENTIFIERS.values():
            assert value not in text and value.replace("^", " ") not in text


@pytest.mark.slow  # waits for the server's cleanup schedule
def test_uploads_and_renders_are_deleted_from_the_server_disk(client: Client, app: LiveApp, tmp_path) -> None:
    marker = tmp_path / "forget-me.dcm"
    marker.write_bytes(identified_dicom())
    client.predict(handle_file(str(marker)), api_name="/predict")
    assert _files_named(app.upload_dir, marker.name), "the upload should be on disk while it is fresh"
    deadline = time.monotonic() + 3 * FORGET_AFTER_S
    while _files_named(app.upload_dir, marker.name) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _files_named(app.upload_dir, marker.name)
    # What is left: empty placeholder files Gradio makes, and files younger than the limit.
    limit = time.time() - 1.5 * FORGET_AFTER_S - 1
    kept = [p for p in app.upload_dir.rglob("*") if p.is_file() and p.stat().st_size and p.stat().st_ctime < limit]
    assert not kept
    for path in app.upload_dir.rglob("*"):
        assert not (path.is_file() and any(v.encode() in path.read_bytes() for v in PATIENT_IDENTIFIERS.values()))


def _files_named(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.rglob(name) if p.is_file()]


@pytest.mark.slow  # a server started with nothing to serve but what the package holds
def test_with_broken_weights_and_no_hub_the_app_still_serves_and_says_why(tmp_path) -> None:
    with running_app(None, tmp_path / "app", CXR_WEIGHTS="missing/folder") as live:
        client = Client(live.url, verbose=False, analytics_enabled=False)
        info = client.predict(api_name="/model_info")
        answers = [client.predict(handle_file(str(path)), api_name="/predict")[0] for path in NIH_EXAMPLES[:2]]
        page = httpx.get(live.url, timeout=60).text
        log = live.log()
    first, second = (np.array(list(answer["probabilities"].values())) for answer in answers)
    assert np.abs(first - second).max() > 0.005  # two real radiographs, two different answers
    assert all(answer["model"]["kind"] == info["kind"] for answer in answers)
    expected = "starter" if (STARTER_DIR / "config.json").is_file() else "demonstration"
    assert info["kind"] == expected
    assert info["why"].startswith("The weights asked for (missing/folder) could not be loaded:")
    assert f"Hub repo {DEFAULT_MODEL_REPO} at revision {DEFAULT_MODEL_REVISION} is not available" in info["why"]
    assert info["why"] in log and "Traceback" not in log
    assert "Why these weights" in page


@pytest.mark.slow  # a second server, started against a local stand-in for the Hub
def test_without_a_folder_the_app_serves_the_pinned_hub_revision(tiny_weights: Path, tmp_path, monkeypatch) -> None:
    token = "hf_standin_token"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS only
    with HubStandIn(token=token) as hub:
        api = HfApi(endpoint=hub.endpoint, token=token)
        api.create_repo(DEFAULT_MODEL_REPO)
        pinned = api.upload_folder(repo_id=DEFAULT_MODEL_REPO, folder_path=tiny_weights).oid
        api.create_tag(DEFAULT_MODEL_REPO, tag=DEFAULT_MODEL_REVISION, revision=pinned)
        newer = save_model(make_model(seed=1), tmp_path / "newer")
        api.upload_folder(repo_id=DEFAULT_MODEL_REPO, folder_path=newer)  # main moves on; the tag stays
        hub_env = dict(HF_ENDPOINT=hub.endpoint, HF_TOKEN=token, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1")
        with running_app(None, tmp_path / "app", **hub_env) as live:
            info = Client(live.url, verbose=False, analytics_enabled=False).predict(api_name="/model_info")
            page = httpx.get(live.url, timeout=60).text
    assert info["source"] == DEFAULT_MODEL_REPO and info["revision"] == DEFAULT_MODEL_REVISION
    assert info["commit"] == pinned
    # The Hub is gone now (the stand-in stopped): a restart serves the pinned revision from the cache.
    with running_app(None, tmp_path / "app", **hub_env) as live:
        cached = Client(live.url, verbose=False, analytics_enabled=False).predict(api_name="/model_info")
        log = live.log()
    assert cached["commit"] == pinned and cached["weights_sha256"] == info["weights_sha256"]
    assert "Hugging Face Hub unreachable" in log and "from the local Hugging Face cache" in log
    assert info["weights_sha256"] == sha256_of(tiny_weights / "model.safetensors")
    assert info["weights_sha256"] != sha256_of(newer / "model.safetensors")
    assert f"at revision {DEFAULT_MODEL_REVISION} (commit `{pinned[:12]}`)" in page


def _gray(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(path) as image:
        gray = image.convert("L")
        return np.asarray(gray.resize(size, Image.Resampling.BOX) if size else gray, dtype=float)


@pytest.mark.parametrize("example", NIH_EXAMPLES, ids=lambda p: p.stem)
def test_each_example_has_a_small_thumbnail_of_itself(example: Path) -> None:
    thumbnail = example.parent / "thumbnails" / f"{example.stem}.jpg"
    small = _gray(thumbnail)
    assert max(small.shape) <= 160 and thumbnail.stat().st_size < 10_000
    errors = [np.mean((small - _gray(path, small.shape[::-1])) ** 2) for path in NIH_EXAMPLES]
    assert np.argmin(errors) == NIH_EXAMPLES.index(example) and min(errors) < 50  # itself, reduced; no other
