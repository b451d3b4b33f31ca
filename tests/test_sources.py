"""cxr.sources: one order of weights (explicit → Hub at its pin → bundled starter → demonstration), and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi

from cxr import sources
from cxr.config import ModelConfig
from cxr.predictor import Predictor
from cxr.sources import DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION, hub_target, load_in_order
from cxr.weights import WeightsError, load_model, save_model, sha256_of
from tests.conftest import TINY_CONFIG, make_model
from tests.hub_standin import HubStandIn

TOKEN = "hf_standin_token"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CXR_MODEL_REPO": "a/b", "CXR_MODEL_REVISION": "v2"}, ("a/b", "v2")),
        ({"CXR_MODEL_REPO": "a/b"}, ("a/b", None)),  # another repo: no borrowed tag
        ({}, (DEFAULT_MODEL_REPO, DEFAULT_MODEL_REVISION)),
        ({"CXR_MODEL_REVISION": "abc123"}, (DEFAULT_MODEL_REPO, "abc123")),
    ],
)
def test_hub_target(env, expected) -> None:
    assert hub_target(env) == expected


@pytest.fixture
def offline(monkeypatch, tmp_path: Path) -> Path:
    """No Hub and an empty Hugging Face cache (what huggingface_hub reads from HF_HUB_OFFLINE/HF_HUB_CACHE)."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path


@pytest.fixture
def starter(monkeypatch, tmp_path: Path) -> Path:
    """A bundled starter (a tiny trained-looking model) in place of the package's own."""
    config = TINY_CONFIG.replace(trained=True, metadata={"training": {"dataset": "NIH ChestX-ray14"}})
    folder = save_model(make_model(config, seed=5), tmp_path / "starter", dtype=torch.float16)
    monkeypatch.setattr(sources, "STARTER_DIR", folder)
    return folder


def test_explicit_folder_wins_flag_over_environment(tiny_weights: Path, starter: Path, offline) -> None:
    _, choice = load_in_order(tiny_weights, environ={"CXR_WEIGHTS": str(starter)})
    assert (choice.kind, choice.folder) == ("folder", tiny_weights)
    _, choice = load_in_order(None, environ={"CXR_WEIGHTS": str(tiny_weights)})
    assert (choice.kind, choice.folder) == ("folder", tiny_weights)
    assert choice.reason == "They were asked for explicitly."


def test_broken_explicit_weights_are_an_error_unless_the_caller_must_keep_serving(starter: Path, offline) -> None:
    with pytest.raises(WeightsError, match="neither an existing folder nor a Hugging Face Hub repo id"):
        load_in_order("no/such/folder/here", environ={})
    _, choice = load_in_order("no/such/folder/here", environ={}, strict_explicit=False)
    assert choice.kind == "starter"
    assert choice.reason.startswith("The weights asked for (no/such/folder/here) could not be loaded:")
    assert f"Hub repo {DEFAULT_MODEL_REPO} at revision {DEFAULT_MODEL_REVISION} is not available" in choice.reason


def test_offline_without_cache_serves_the_bundled_starter_in_float32(starter: Path, offline) -> None:
    model, choice = load_in_order(environ={})
    assert choice.kind == "starter" and choice.folder == starter
    assert "not in the local Hugging Face cache" in choice.reason
    assert choice.reason.endswith("The bundled starter model is served instead.")
    assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())
    assert model.config.trained


def test_starter_stored_in_float16_loads_as_the_rounded_float32_weights(starter: Path) -> None:
    reference = make_model(TINY_CONFIG, seed=5).state_dict()
    loaded = load_model(starter).state_dict()
    for name, tensor in reference.items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(loaded[name], expected), name
    full = save_model(make_model(TINY_CONFIG, seed=5), starter.parent / "fp32")
    ratio = (starter / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.51


def test_corrupted_starter_fails_clearly_and_demonstration_weights_are_served(starter: Path, offline) -> None:
    weights = starter / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"does not match the SHA-256 recorded in config\.json"):
        load_model(starter)
    model, choice = load_in_order(environ={})
    assert choice.kind == "demonstration" and choice.folder is None and not model.config.trained
    assert "The bundled starter model could not be loaded" in choice.reason and "SHA-256" in choice.reason
    assert choice.reason.endswith("Demonstration weights are served instead: their outputs are meaningless.")


def test_demonstration_weights_are_the_same_on_every_start_and_leave_the_rng_alone(
    monkeypatch, offline, tmp_path: Path
) -> None:
    monkeypatch.setattr(sources, "STARTER_DIR", tmp_path / "no-starter")
    config = ModelConfig(trunk="resnet18", image_size=256, trained=False)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = sources.demonstration_model(config).state_dict()
    after = torch.rand(3)
    second = sources.demonstration_model(config).state_dict()
    assert torch.equal(before, after)
    assert all(torch.equal(first[name], second[name]) for name in first)
    _, choice = load_in_order(environ={})
    assert choice.kind == "demonstration" and "This installation bundles no starter model." in choice.reason


@pytest.mark.parametrize("case", ["repo missing", "tag missing", "hub unreachable", "repo present"])
def test_hub_stand_in_each_failure_serves_the_next_source(
    case: str, tiny_weights: Path, starter: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS only
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    repo = "cxr-project/standin-model"
    with HubStandIn(token=TOKEN) as hub:
        # What HF_ENDPOINT sets when huggingface_hub is imported (it is imported already here).
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.endpoint)
        template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr("huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        if case != "repo missing":
            api.create_repo(repo)
            commit = api.upload_folder(repo_id=repo, folder_path=tiny_weights).oid
            if case != "tag missing":
                api.create_tag(repo, tag="v1", revision=commit)
        if case == "hub unreachable":
            hub.__exit__(None, None, None)
        model, choice = load_in_order(environ={"CXR_MODEL_REPO": repo, "CXR_MODEL_REVISION": "v1"})
    if case == "repo present":
        assert (choice.kind, choice.location, choice.revision, choice.commit) == ("hub", repo, "v1", commit)
        assert model.config.metadata["weights_sha256"] == sha256_of(tiny_weights / "model.safetensors")
        return
    assert choice.kind == "starter"
    expected = {
        "repo missing": f"Hub repo {repo} does not exist or is private",
        "tag missing": f"Hub repo {repo} has no revision 'v1'",
        "hub unreachable": "not in the local Hugging Face cache",
    }[case]
    assert expected in choice.reason


def test_predictor_from_pretrained_without_a_source_follows_the_same_order(starter: Path, offline) -> None:
    predictor = Predictor.from_pretrained(device="cpu")
    assert predictor.config.metadata["weights_sha256"] == sha256_of(starter / "model.safetensors")
