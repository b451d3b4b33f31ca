"""``python -m train publish``: the staged folder and model card from a synth-trained model, and the upload
end to end against a local HTTP stand-in for the Hub (tests/hub_standin.py), then loading it back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from cxr.weights import WEIGHTS_FILE, load_config, load_model, save_model, sha256_of
from tests.conftest import ROOT, make_model
from tests.hub_standin import HubStandIn
from train.__main__ import main as train_main
from train.data.synth import SynthConfig, generate
from train.publishing.card import CARD_TEMPLATE, base_model
from train.publishing.publish import PublishError
from train.publishing.publish import stage as stage_folder

pytestmark = pytest.mark.slow  # the module fixture trains and evaluates a small model (about a minute)

TOKEN = "hf_standin_write_token"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synth -> prepare -> fit -> evaluate: a real (tiny) trained and evaluated weights folder."""
    root = tmp_path_factory.mktemp("pipeline")
    data = generate(root / "data", SynthConfig(patients=70, size=64, seed=5), progress=False)
    assert train_main(["prepare", "--data-dir", str(data), "--image-size", "64", "--workers", "1"]) == 0
    fit = ["fit", "--data-dir", str(data), "--out", str(root / "run"), "--trunk", "resnet18", "--image-size", "64"]
    fit += ["--no-pretrained", "--epochs", "2", "--batch-size", "16", "--workers", "0", "--no-progress"]
    assert train_main(fit) == 0
    weights = root / "run" / "weights"
    evaluate = ["evaluate", "--weights", str(weights), "--data-dir", str(data), "--workers", "0"]
    assert train_main([*evaluate, "--bootstrap", "100"]) == 0
    return weights


def run_publish(
    *args: str, endpoint: str | None = None, token: str | None = TOKEN, home: Path
) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, so HF_ENDPOINT and friends are read as in production."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="0")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if token:
        env["HF_TOKEN"] = token
    command = [sys.executable, "-m", "train", "publish", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_dry_run_stages_a_complete_loadable_folder_and_a_card_with_real_numbers(trained: Path, tmp_path) -> None:
    stage = tmp_path / "stage"
    argv = ["publish", "--weights", str(trained), "--repo-id", "cxr-test/tiny", "--dry-run", "--stage", str(stage)]
    assert train_main(argv) == 0
    metrics = json.loads((trained / "evaluation" / "metrics.json").read_text())
    files = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()}
    expected = {"README.md", "config.json", "model.safetensors", "metrics.json", "split.json", "metrics.jsonl"}
    expected |= {f"evaluation/{name}" for name in ("metrics.json", "report.md", "predictions.csv")}
    expected |= {f"evaluation/{name}" for name in metrics["plots"].values()}
    assert expected <= files

    # What users download loads strictly, with the checksum, and carries the headline numbers for the app.
    model = load_model(stage)
    evaluation = model.config.metadata["evaluation"]
    assert evaluation["mean_auroc"] == metrics["mean_auroc"] and evaluation["n_images"] == metrics["n_images"]
    assert model.config.metadata["weights_sha256"] == sha256_of(trained / WEIGHTS_FILE)
    assert model.config.metadata["training"] == load_config(trained).metadata["training"]
    assert load_config(trained).metadata.get("evaluation") is None  # the source folder is left as it was

    card = ModelCard.load(stage / "README.md")
    assert card.data.license == "mit" and card.data.pipeline_tag == "image-classification"
    assert "chest-x-ray" in card.data.tags and "synthetic-data" in card.data.tags
    assert card.data.datasets is None  # a synthetic run does not claim NIH's dataset
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["Mean AUROC (14 findings)"] == round(metrics["mean_auroc"], 4)
    assert results["AUROC Pleural Thickening"] == round(metrics["per_label"]["Pleural_Thickening"]["auroc"], 4)
    text = card.text
    assert "not a medical device" in text and "SYNTHETIC" in text
    for phrase in ("NLP", "imbalance", "AP/PA shift", "Wang et al. 2017", "NOT the official", "## Training"):
        assert phrase in text
    mass = metrics["per_label"]["Mass"]
    assert f"| Mass | {mass['n_positive']} |" in text and f"{mass['auroc']:.3f}" in text
    assert "{{" not in text and "}}" not in text  # every template variable was filled
    # Every file the card links to is in the upload.
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", text):
        assert target in files, target


def test_upload_end_to_end_against_a_local_hub_and_load_back_at_the_printed_commit(trained: Path, tmp_path) -> None:
    with HubStandIn(token=TOKEN) as hub:
        done = run_publish(
            "--weights", str(trained), "--repo-id", "cxr-test/tiny", "--tag", "v0.1.0",
            endpoint=hub.endpoint, home=tmp_path / "hf",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        repo = hub.repos["cxr-test/tiny"]
        assert len(repo.commits) == 1 and [m for m, p in hub.requests if p.endswith("/commit/main")] == ["POST"]
        commit = repo.commits[0]
        assert f"at commit {commit.oid}" in done.stdout and f"CXR_MODEL_REVISION={commit.oid}" in done.stdout
        assert repo.tags == {"v0.1.0": commit.oid} and repo.branches == {"main": commit.oid}
        assert commit.files[WEIGHTS_FILE] == (trained / WEIGHTS_FILE).read_bytes()
        assert {WEIGHTS_FILE, "evaluation/roc_curves.png"} <= commit.lfs_paths  # binaries went through LFS
        assert "README.md" not in commit.lfs_paths and "config.json" not in commit.lfs_paths
        assert ModelCard(commit.files["README.md"].decode()).data.eval_results

        # The app's loader (cxr.weights.load_model) at the printed commit and at the tag gets these weights.
        check = (
            "import json, sys; from cxr.weights import load_model; "
            "m = load_model('cxr-test/tiny', revision=sys.argv[1]); "
            "print(json.dumps([m.config.metadata['weights_sha256'], m.config.metadata['evaluation']['mean_auroc']]))"
        )
        for revision in (commit.oid, "v0.1.0"):
            env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
            env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / f"cache-{revision}"), HF_HUB_DISABLE_XET="1")
            loaded = subprocess.run(
                [sys.executable, "-c", check, revision], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            assert loaded.returncode == 0, loaded.stderr
            sha, mean = json.loads(loaded.stdout.strip().splitlines()[-1])
            metrics = json.loads((trained / "evaluation" / "metrics.json").read_text())
            assert sha == sha256_of(trained / WEIGHTS_FILE) and mean == metrics["mean_auroc"]

        assert 'Predictor.from_pretrained("cxr-test/tiny", revision="v0.1.0")' in commit.files["README.md"].decode()

        # Publishing again without a tag reuses the repo: the weights commit, then the card pinning its hash.
        again = run_publish(
            "--weights", str(trained), "--repo-id", "cxr-test/tiny", endpoint=hub.endpoint, home=tmp_path
        )
        assert again.returncode == 0, again.stderr
        weights_commit, card_commit = repo.commits[1], repo.commits[2]
        assert len(repo.commits) == 3 and repo.branches["main"] == card_commit.oid
        assert f"CXR_MODEL_REVISION={weights_commit.oid}" in again.stdout
        card = card_commit.files["README.md"].decode()
        assert f'Predictor.from_pretrained("cxr-test/tiny", revision="{weights_commit.oid}")' in card
        assert card_commit.files[WEIGHTS_FILE] == weights_commit.files[WEIGHTS_FILE]


def test_upload_errors_are_one_clear_line(trained: Path, tmp_path) -> None:
    with HubStandIn(token=TOKEN) as hub:
        no_token = run_publish(
            "--weights", str(trained), "--repo-id", "o/n", endpoint=hub.endpoint, token=None, home=tmp_path
        )
        assert no_token.returncode == 2 and "set HF_TOKEN or run `hf auth login`" in no_token.stderr
        wrong = run_publish(
            "--weights", str(trained), "--repo-id", "o/n", endpoint=hub.endpoint, token="hf_bad", home=tmp_path
        )
        assert wrong.returncode == 1 and "the Hub refused the upload" in wrong.stderr
        assert "Traceback" not in wrong.stderr
        assert hub.repos == {}


def test_refuses_untrained_unevaluated_and_foreign_metrics(trained: Path, tmp_path, capsys) -> None:
    def publish(weights: Path) -> str:
        stage = tmp_path / f"stage-{weights.name}"
        assert (
            train_main(["publish", "--weights", str(weights), "--repo-id", "o/n", "--dry-run", "--stage", str(stage)])
            == 2
        )
        return capsys.readouterr().err

    config = load_config(trained)
    assert "untrained weights" in publish(save_model(make_model(config.replace(trained=False)), tmp_path / "random"))
    bare = save_model(make_model(config), tmp_path / "bare")
    assert "evaluate first" in publish(bare)
    (bare / "evaluation").mkdir()
    (bare / "evaluation" / "metrics.json").write_bytes((trained / "evaluation" / "metrics.json").read_bytes())
    assert "computed for other weights" in publish(bare)
    assert "split; the card's headline must be the test split" in publish(altered(trained, tmp_path, split="val"))
    calibrated_elsewhere = altered(trained, tmp_path, per_label={"Mass": {"temperature": 1.7}})
    assert "Mass temperature 1.7 but config.json serves 1.0" in publish(calibrated_elsewhere)
    assert "--update-config" in publish(calibrated_elsewhere)
    biased_elsewhere = altered(trained, tmp_path, per_label={"Edema": {"bias": -0.4}})
    assert "Edema bias -0.4 but config.json serves 0.0" in publish(biased_elsewhere)
    old_smoke = altered(trained, tmp_path, subset={"n_evaluated": 3, "n_in_split": 25596})
    assert "does not record which images" in publish(old_smoke)


def altered(trained: Path, tmp_path: Path, per_label: dict | None = None, **changes) -> Path:
    """A copy of the trained folder whose metrics.json has ``changes`` (and per-label ``per_label``) applied."""
    folder = tmp_path / f"altered-{len(list(tmp_path.glob('altered-*')))}"
    shutil.copytree(trained, folder)
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    metrics.update(changes)
    for label, values in (per_label or {}).items():
        metrics["per_label"][label].update(values)
    (folder / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
    return folder


SUBSET = {"used": 106, "official": 25596, "description": "106 of the 25,596 official test images (test_list.txt)"}


def test_a_subset_evaluation_is_stated_on_the_card_and_needs_a_flag_to_upload(trained: Path, tmp_path, capsys) -> None:
    subset = altered(trained, tmp_path, subset=SUBSET)
    stage = tmp_path / "stage"
    assert train_main(["publish", "--weights", str(subset), "--dry-run", "--stage", str(stage)]) == 0
    text = ModelCard.load(stage / "README.md").text
    assert "Evaluated on 106 of the 25,596 official test images" in text
    assert "evaluated on 106 of the 25,596 official test images (test_list.txt) only |" in text  # the table row
    assert json.loads((stage / "config.json").read_text())["metadata"]["evaluation"]["subset"] == SUBSET["description"]
    # A template that drops the statement is refused rather than published silently.
    template = tmp_path / "card.md"
    template.write_text(CARD_TEMPLATE.read_text().replace("{{ subset_note }}", "").replace("{{ evaluated_on }}", "x"))
    with pytest.raises(PublishError, match="does not state that only 106 of the 25,596"):
        stage_folder(subset, subset / "evaluation", tmp_path / "stage2", repo_id=None, revision=None, template=template)
    # The upload itself needs --allow-subset (checked before any network access).
    refused = run_publish("--weights", str(subset), "--repo-id", "o/n", endpoint="http://127.0.0.1:9", home=tmp_path)
    assert refused.returncode == 2 and "--allow-subset" in refused.stderr


def test_card_says_how_to_install_and_load_and_what_the_trunk_started_from(trained: Path, tmp_path) -> None:
    stage = tmp_path / "stage"
    assert train_main(["publish", "--weights", str(trained), "--dry-run", "--stage", str(stage)]) == 0
    card = ModelCard.load(stage / "README.md")
    assert card.data.library_name == "cxr"
    assert card.data.base_model is None  # trained with --no-pretrained: no base model is claimed
    assert "trained from scratch (random initialisation): there is no base model" in card.text
    assert 'pip install "cxr @ git+https://github.com/cxr-project/cxr"' in card.text
    assert "<https://github.com/cxr-project/cxr>" in card.text
    assert "<commit hash" not in card.text and 'Predictor.from_pretrained("path/to/this/folder")' in card.text
    assert card.data.model_name == "weights"  # no repo id: named after the folder


def test_base_model_is_timms_pretrained_weights_of_the_trunk(trained: Path) -> None:
    config = load_config(trained)
    pretrained = config.replace(metadata={**config.metadata, "training": {"pretrained_trunk": True}})
    assert base_model(pretrained) == "timm/resnet18.a1_in1k"
    assert base_model(config.replace(metadata={})) is None
