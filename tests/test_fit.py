"""``python -m train fit``: recipes, schedule, losses, augmentation, and synth -> prepare -> fit -> cxr."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr.config import IMAGENET_MEAN, IMAGENET_STD
from cxr.labels import CHESTXRAY8_LABELS, CHESTXRAY14_LABELS
from cxr.predictor import Predictor
from cxr.weights import load_model
from tests.train_helpers import IMAGE_SIZE, FitProcess, comparable, fit_command, prepared_synth
from train import __main__ as train_cli
from train.data.augment import Augmentation
from train.data.cache import default_cache_dir
from train.data.nih import SPLIT_FILE, find_images, label_matrix, official_split, read_split, records_by_name
from train.evaluation.metrics import mean_auroc
from train.fitting import checkpoint as ckpt
from train.fitting.config import TrainError, make_config
from train.fitting.export import CURVES_PLOT, METRICS_LOG, read_metrics_log
from train.fitting.loop import fit, get_lr
from train.fitting.losses import batch_pos_weight, class_pos_weight

# -- recipes and options ---------------------------------------------------------------------------


def test_seed_recipe_is_the_original_report() -> None:
    cfg = make_config("seed", data_dir="nih")
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.image_size) == ("adam", 1e-4, 16, 5, 512)
    assert (cfg.pos_weight, cfg.schedule, cfg.warmup_epochs, cfg.weight_decay) == ("wang", "constant", 0.0, 0.0)
    assert (cfg.augment, cfg.hflip, cfg.normalize) == (False, False, "none")
    assert make_config("seed", data_dir="nih", epochs=2, labels="chestxray8").epochs == 2


def test_default_recipe() -> None:
    cfg = make_config(data_dir="nih")
    assert (cfg.recipe, cfg.optimizer, cfg.schedule, cfg.pos_weight, cfg.normalize) == (
        "default", "adamw", "cosine", "class-sqrt", "imagenet",
    )  # fmt: skip
    assert cfg.augment and not cfg.hflip and cfg.warmup_epochs > 0 and cfg.weight_decay > 0 and cfg.pretrained


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": "chexpert"}, "--labels must be one of"),
        ({"val_fraction": 0.0}, "--val-fraction"),
        ({"batch_size": 0}, "must be positive"),
        ({"data_dir": ""}, "--data-dir is required"),
    ],
)
def test_bad_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(TrainError, match=message):
        make_config(**{"data_dir": "nih", **changes})
    with pytest.raises(TrainError, match="Unknown recipe"):
        make_config("best", data_dir="nih")


def test_learning_rate_warms_up_then_follows_a_cosine() -> None:
    cfg = make_config(data_dir="nih", lr=1.0, warmup_epochs=1.0, epochs=3, min_lr_ratio=0.1)
    assert [get_lr(s, cfg, 10) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert get_lr(10, cfg, 10) == pytest.approx(1.0)
    assert get_lr(20, cfg, 10) == pytest.approx(0.55)  # halfway down the cosine
    assert get_lr(29, cfg, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 19 / 20)))
    seed = make_config("seed", data_dir="nih")
    assert {get_lr(s, seed, 10) for s in range(50)} == {1e-4}


def test_positive_weights() -> None:
    targets = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=np.float32)
    # label 0: 1 positive, 3 negatives; label 1: none (weight 1); label 2: 3 positives, 1 negative.
    torch.testing.assert_close(class_pos_weight(targets), torch.tensor([math.sqrt(3), 1.0, math.sqrt(1 / 3)]))
    assert batch_pos_weight(torch.from_numpy(targets)).item() == pytest.approx(8 / 4)  # 8 zeros, 4 ones
    assert batch_pos_weight(torch.zeros(4, 3)).item() == 1.0


# -- augmentation --------------------------------------------------------------------------------


def test_augmentation_depends_on_seed_epoch_and_row_only() -> None:
    augment = Augmentation()
    pair = augment.sample([5, 6], epoch=1, seed=0)
    torch.testing.assert_close(augment.sample([6, 5], epoch=1, seed=0), pair.flip(0))  # not on batch order
    assert not torch.equal(augment.sample([5, 6], epoch=2, seed=0), pair)
    assert not torch.equal(augment.sample([5, 6], epoch=1, seed=1), pair)
    limits = torch.tensor([math.radians(7), 0.1, 0.05, 0.05, 0.1, 0.1])
    centre = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    many = augment.sample(range(200), epoch=0, seed=0)
    assert ((many[:, :6] - centre).abs() <= limits + 1e-6).all()
    assert (many[:, 7] == 1).all()  # no flips unless asked


def identity(n: int) -> torch.Tensor:
    return torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]).repeat(n, 1)


def test_identity_parameters_leave_images_unchanged() -> None:
    images = torch.rand(3, 32, 32)
    torch.testing.assert_close(Augmentation.apply(images, identity(3)), images, atol=1e-6, rtol=0)


def test_flip_and_quarter_turn_match_torch() -> None:
    images = torch.rand(2, 16, 16)
    flip = identity(2)
    flip[:, 7] = -1.0
    torch.testing.assert_close(Augmentation.apply(images, flip), images.flip(-1), atol=1e-6, rtol=0)
    turn = identity(2)
    turn[:, 0] = math.pi / 2
    torch.testing.assert_close(Augmentation.apply(images, turn), images.rot90(1, dims=(1, 2)), atol=1e-5, rtol=0)
    assert Augmentation(hflip=True).sample(range(100), 0, 0)[:, 7].eq(-1).sum() in range(30, 71)


def test_intensity_jitter_matches_its_formula() -> None:
    images = torch.rand(1, 8, 8)
    params = identity(1)
    params[0, 4:7] = torch.tensor([0.05, 1.1, 1.2])  # brightness, contrast, gamma
    gamma = images**1.2
    expected = ((gamma - gamma.mean()) * 1.1 + gamma.mean() + 0.05).clamp(0, 1)
    torch.testing.assert_close(Augmentation.apply(images, params), expected, atol=1e-6, rtol=0)


# -- the whole road: synth -> prepare -> fit -> cxr ----------------------------------------------

EPOCHS = 5
# timm's tiny test ResNet (0.4 M parameters, 3x3 stem) learns the synthetic patterns in seconds; resnet18,
# with its 7x7 stride-2 stem at 64 px, needs about 20x the images (~0.84 mean AUROC after 9,400).
SMALL_TRUNK = "test_resnet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, run folder) of a default-recipe run on synthetic data (small trunk, 64 px, CPU)."""
    data = prepared_synth(tmp_path_factory.mktemp("fit-data"), patients=500)
    run = tmp_path_factory.mktemp("fit-run") / "run"
    cfg = make_config(
        data_dir=str(data), out=str(run), trunk=SMALL_TRUNK, image_size=IMAGE_SIZE, pretrained=False,
        epochs=EPOCHS, batch_size=16, lr=2e-3, val_fraction=0.2, device="cpu", workers=0, progress=False,
    )  # fmt: skip
    fit(cfg)
    return data, run


def test_fit_learns_the_synthetic_labels(trained: tuple[Path, Path]) -> None:
    _, run = trained
    history = read_metrics_log(run / "weights" / METRICS_LOG)
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    best = max(history, key=lambda r: r["val_mean_auroc"])
    assert best["val_mean_auroc"] >= 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_exported_folder_loads_in_cxr_and_predicts(trained: tuple[Path, Path]) -> None:
    data, run = trained
    weights = run / "weights"
    history = read_metrics_log(weights / METRICS_LOG)
    best = max(history, key=lambda r: r["val_mean_auroc"])
    model = load_model(weights)
    config = model.config
    assert config.trained and config.labels == CHESTXRAY14_LABELS and config.image_size == IMAGE_SIZE
    assert (config.mean, config.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert config.thresholds == pytest.approx(best["thresholds"])
    training = config.metadata["training"]
    assert training["best_epoch"] == best["epoch"] and training["val_mean_auroc"] == best["val_mean_auroc"]
    assert training["dataset"] == "synthetic (python -m train synth)" and training["recipe"] == "default"
    assert training["pretrained_trunk"] is False and training["seed"] == 0 and training["epochs"] == EPOCHS
    assert training["hyperparameters"]["optimizer"] == "adamw" and training["hyperparameters"]["lr"] == 2e-3
    assert training["torch"] == torch.__version__ and "timm" in training
    split = official_split(data, val_fraction=0.2, seed=0)
    assert training["images"] == {"train": len(split.train), "val": len(split.val), "test": len(split.test)}

    # The test split, never seen in training, through the app's own road: PNG -> cxr.Predictor.
    predictor = Predictor(model, device="cpu")
    paths = find_images(data)
    predictions = predictor.predict_batch([paths[r.image] for r in split.test], batch_size=32)
    probabilities = np.stack([p.probabilities for p in predictions])
    assert probabilities.shape == (len(split.test), 14)
    assert mean_auroc(label_matrix(split.test, CHESTXRAY14_LABELS), probabilities) >= 0.85


def test_run_folder_holds_split_log_curves_and_two_checkpoints(trained: tuple[Path, Path]) -> None:
    data, run = trained
    weights = run / "weights"
    split = official_split(data, val_fraction=0.2, seed=0)
    by_name = records_by_name(split.train + split.val + split.test)
    assert read_split(weights / SPLIT_FILE, by_name) == split
    assert json.loads((weights / SPLIT_FILE).read_text())["seed"] == 0
    history = read_metrics_log(weights / METRICS_LOG)
    best_epoch = load_model(weights).config.metadata["training"]["best_epoch"]
    kept = sorted(ckpt.epoch_of(p) for p in ckpt.list_checkpoints(run / "checkpoints"))
    assert kept == sorted({best_epoch, EPOCHS})
    last = ckpt.load_checkpoint(ckpt.checkpoint_path(run / "checkpoints", EPOCHS))
    assert comparable(last["history"]) == comparable(history) and last["best_epoch"] == best_epoch
    assert {"config", "epoch", "model", "optimizer", "scheduler", "scaler", "rng"} <= set(last)
    assert last["epoch"] == EPOCHS and last["config"]["trunk"] == SMALL_TRUNK
    steps_per_epoch = len(split.train) // 16
    assert last["scheduler"] == {"step": EPOCHS * steps_per_epoch, "steps_per_epoch": steps_per_epoch}
    last_progress = 1 - 1 / ((EPOCHS - 1) * steps_per_epoch)  # the cosine after one warm-up epoch
    assert history[-1]["lr"] == pytest.approx(2e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * last_progress))))
    with Image.open(weights / CURVES_PLOT) as plot:
        assert plot.format == "PNG" and plot.width > 500
    assert json.loads((run / "run.json").read_text())["epochs"] == EPOCHS


def test_resume_refuses_changed_settings(trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, run = trained
    assert train_cli.main(["fit", "--out", str(run), "--resume", "--lr", "0.1"]) == 1
    assert "options differ from it: --lr (saved 0.002, given 0.1)" in capsys.readouterr().err


def test_seed_recipe_runs_and_exports_unnormalised_input(tmp_path: Path) -> None:
    """The seed recipe at test size: Adam, Wang's per-batch weighted loss, no mean/std (ToTensor), 8 labels."""
    data = prepared_synth(tmp_path / "data", patients=40)
    code = train_cli.main(
        ["fit", "--recipe", "seed", "--data-dir", str(data), "--cache-dir", str(default_cache_dir(data, IMAGE_SIZE)),
         "--out", str(tmp_path / "run"), "--labels", "chestxray8", "--epochs", "1", "--image-size", str(IMAGE_SIZE),
         "--trunk", SMALL_TRUNK, "--no-pretrained", "--device", "cpu", "--workers", "0", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    config = load_model(tmp_path / "run" / "weights").config
    assert config.labels == CHESTXRAY8_LABELS
    assert (config.mean, config.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    training = config.metadata["training"]
    assert training["recipe"] == "seed"
    hyper = training["hyperparameters"]
    assert (hyper["optimizer"], hyper["lr"], hyper["batch_size"], hyper["pos_weight"]) == ("adam", 1e-4, 16, "wang")
    assert hyper["augment"] is False and hyper["schedule"] == "constant"


def test_missing_imagenet_weights_offline_is_one_clear_error(tmp_path: Path) -> None:
    """Without --no-pretrained and without the Hub or its cache, fit stops with advice, not a traceback."""
    data = prepared_synth(tmp_path / "data", patients=20)
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    args = ["--data-dir", str(data), "--out", str(tmp_path / "run"), "--trunk", "resnet18", "--image-size", "64"]
    job = FitProcess(fit_command(*args, "--batch-size", "8", "--device", "cpu", "--workers", "0"), offline)
    assert job.finish() == 1
    assert "error: Could not load ImageNet weights for resnet18" in job.output
    assert "--no-pretrained" in job.output and "Traceback" not in job.output
